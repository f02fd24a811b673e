"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel
from quart import Blueprint, Response
from quart_schema import document_response
from sqlalchemy import text

from web.responses import json_response
from web.services import services

blueprint = Blueprint("health", __name__)


class Health(BaseModel):
    status: str
    checks: dict[str, str] | None = None
    live_clients: int | None = None


@blueprint.get("/healthz")
@document_response(Health)
async def healthz() -> Response:
    """200 while the process is up, with how many live-stream clients it serves."""
    return json_response({"status": "ok", "live_clients": services().live.client_count})


async def _postgres_ok() -> bool:
    try:
        async with asyncio.timeout(2):
            async with services().engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 — whatever the reason, the database is not healthy
        return False


@blueprint.get("/readyz")
@document_response(Health)
@document_response(Health, 503)
async def readyz() -> Response:
    """200 when Postgres and Temporal both answer; 503 naming the one that does not."""
    postgres, temporal = await asyncio.gather(_postgres_ok(), services().temporal.healthy())
    checks = {"postgres": "ok" if postgres else "failed", "temporal": "ok" if temporal else "failed"}
    if postgres and temporal:
        return json_response({"status": "ready", "checks": checks})
    failed = [name for name, state in checks.items() if state != "ok"]
    return json_response(
        {"status": "unavailable", "checks": checks,
         "error": {"code": "not_ready", "message": f"Not ready: {', '.join(failed)} did not answer."}},
        503,
    )
