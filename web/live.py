"""The live event stream: `GET /api/v1/workspaces/{id}/events/live` (Server-Sent Events) and
`POST .../events/live-token` (a short-lived signed token for browsers' `EventSource`). The
hub that feeds every client of the process is web.live_hub.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime

import asyncpg
from pydantic import BaseModel, ConfigDict
from quart import Blueprint, Response, g
from quart_schema import document_querystring, document_response

from models.timestamps import iso
from models.workspaces import MasterKey
from web import key_tokens
from web.auth import authenticate_master_key, master_key_for_workspace, parse_uuid, workspace_not_found
from web.errors import APIError
from web.jsonio import parse_query
from web.live_hub import LiveClient
from web.responses import json_response
from web.services import services

log = logging.getLogger("headwater.live")

blueprint = Blueprint("live", __name__, url_prefix="/api/v1/workspaces/<workspace_id>/events")

TOKEN_PREFIX = "lt_"


# --- tokens ----------------------------------------------------------------------------------

def sign_live_token(key: MasterKey, expires: int) -> str:
    """`lt_…`: the workspace, the master key and the expiry (web/key_tokens.py)."""
    return key_tokens.sign(TOKEN_PREFIX, key, expires)


async def verify_live_token(token: str, workspace_id: uuid.UUID) -> None:
    invalid = APIError(401, "invalid_token", "The live token is not valid or has expired; ask for a new one.")
    if (await key_tokens.verify(TOKEN_PREFIX, token, invalid))["w"] != workspace_id:
        raise invalid


# --- the endpoints ---------------------------------------------------------------------------

class LiveQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    types: str | None = None  # comma-separated
    names: str | None = None  # comma-separated
    source_id: uuid.UUID | None = None
    token: str | None = None


class LiveToken(BaseModel):
    token: str
    expires_at: str
    request_id: str


def _split(value: str | None) -> set[str] | None:
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()} or None


@blueprint.post("/live-token")
@master_key_for_workspace
@document_response(LiveToken, 201)
async def create_live_token(workspace_id: uuid.UUID) -> Response:
    """A token for `GET .../events/live?token=...` (browsers' `EventSource` cannot send headers).
    It is checked when the stream opens; an open stream outlives it."""
    expires = int(time.time()) + services().settings.live_token_ttl_seconds
    return json_response({"token": sign_live_token(g.master_key, expires),
                          "expires_at": iso(datetime.fromtimestamp(expires, UTC))}, 201)


@blueprint.get("/live")
@document_querystring(LiveQuery)
async def live_events(workspace_id: str) -> Response:
    """Server-Sent Events: `id: evt_...`, `event: <type>`, `data: <canonical event JSON>` for
    each event committed from now on (filters `types`, `names`, `source_id`, comma-separated
    lists); `: keep-alive` every 15 s; `event: dropped` with `{"count"}` when events were
    sampled out. Auth: `Authorization: Bearer <master key>` or `?token=` from `live-token`."""
    query: LiveQuery = parse_query(LiveQuery)
    workspace = parse_uuid(workspace_id, workspace_not_found())
    if query.token is not None:
        await verify_live_token(query.token, workspace)
    else:
        key = await authenticate_master_key()
        if key.workspace_id != workspace:
            raise workspace_not_found()
    svc = services()
    settings = svc.settings
    client = LiveClient(workspace, _split(query.types), _split(query.names),
                        str(query.source_id) if query.source_id else None,
                        settings.live_max_events_per_second, settings.live_queue_events)
    try:
        await svc.live.subscribe(client)
    except (asyncpg.PostgresError, OSError):
        raise APIError(503, "storage_unavailable", "The event store is unavailable; try again shortly.",
                       headers={"Retry-After": "1"}) from None

    async def stream():
        try:
            yield b"retry: 3000\n: connected\n\n"
            while True:
                chunk = await client.next_chunk(settings.live_keepalive_seconds)
                yield chunk if chunk is not None else b": keep-alive\n\n"
        finally:
            await svc.live.unsubscribe(client)

    response = Response(stream(), content_type="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # tell proxies not to buffer the stream
    response.timeout = None
    return response
