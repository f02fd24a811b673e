"""Anonymous streams: ingest with no account, public info, and the claim that moves a
stream's events into a workspace."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel
from quart import Blueprint, Response, current_app
from quart_schema import document_response
from temporalio.client import WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from activities.redaction import redact_audit_event
from models.canonical import AuditEventIn, audit_body
from models.ids import new_event_id
from models.rate_limits import LimitExceeded, Quota, consume
from models.streams import (
    NewStreamEvent,
    StreamClaimed,
    StreamExpired,
    StreamLimits,
    StreamRepository,
)
from models.timestamps import iso, utcnow
from telemetry import metrics
from web.auth import authenticate_master_key
from web.clientip import client_ip
from web.errors import APIError
from web.jsonio import parse_model, read_json_object
from web.responses import json_response
from web.services import Services, TemporalUnavailable, services
from workflows.params import ClaimStreamInput, StreamExpiryInput
from workflows.stream_claim import StreamClaimWorkflow
from workflows.stream_claim import workflow_id as claim_workflow_id
from workflows.stream_expiry import StreamExpiryWorkflow
from workflows.stream_expiry import workflow_id as expiry_workflow_id

log = logging.getLogger("headwater.streams")

CLAIM_WAIT_SECONDS = 30

blueprint = Blueprint("streams", __name__, url_prefix="/api/v1/streams")

class AuditBatchIn(BaseModel):
    events: list[AuditEventIn]


class IngestOut(BaseModel):
    ids: list[str]
    redacted_count: int
    request_id: str


class StreamInfoOut(BaseModel):
    claim_token: str
    event_count: int
    status: Literal["active", "claimed", "expired"]
    created_at: str
    expires_at: str
    request_id: str


class ClaimIn(BaseModel):
    claim_token: str


class ClaimOut(BaseModel):
    event_count: int
    request_id: str


_UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", re.IGNORECASE)


def parse_claim_token(value: Any) -> uuid.UUID:
    """A claim token is a UUIDv4 (version 4, RFC 4122 variant) in its canonical text form."""
    if not isinstance(value, str) or not _UUID4.match(value):
        raise APIError(400, "invalid_token", "The claim token must be a UUIDv4, e.g. "
                       "'a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d'.")
    return uuid.UUID(value)


def rate_limit_headers(quota: Quota) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(quota.limit),
        "RateLimit-Remaining": str(max(quota.remaining, 0)),
        "RateLimit-Reset": str(quota.reset_after),
    }


def limit_error(exc: LimitExceeded) -> APIError:
    metrics.count(metrics.STREAM_REFUSALS, exc.code)
    headers = rate_limit_headers(exc.quota) | {"Retry-After": str(exc.quota.reset_after)}
    return APIError(429, exc.code, exc.message, details={"limit": exc.quota.limit, "fits": exc.fits},
                    headers=headers)


async def limit_requests(svc: Services, ip: str) -> Quota:
    """30 requests a minute per IP, across every API process (the counter is in Postgres)."""
    try:
        async with svc.transaction() as session:
            return await consume(session, key=f"stream-requests:{ip}", window=timedelta(minutes=1),
                                 limit=svc.settings.stream_requests_per_minute, code="rate_limited",
                                 what="Requests per minute from this IP")
    except LimitExceeded as exc:
        raise limit_error(exc) from None


def parse_events(data: dict[str, Any], max_batch: int) -> list[AuditEventIn]:
    if "events" not in data:
        return [parse_model(AuditEventIn, data)]
    items = data["events"]
    if set(data) != {"events"}:
        extra = sorted(set(data) - {"events"})
        raise APIError(422, "validation_failed", f"A batch has only 'events'; unexpected: {', '.join(extra)}",
                       [{"field": f, "message": "Extra inputs are not permitted"} for f in extra])
    if not isinstance(items, list) or not items:
        raise APIError(422, "validation_failed", "'events' must be a non-empty array of events.",
                       [{"field": "events", "message": "must be a non-empty array"}])
    if len(items) > max_batch:
        raise APIError(422, "batch_too_large", f"A batch holds at most {max_batch} events; got {len(items)}.",
                       [{"field": "events", "message": f"at most {max_batch} items"}])
    events = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise APIError(422, "validation_failed", f"events[{index}] must be an object.",
                           [{"field": f"events[{index}]", "message": "must be an object"}])
        events.append(parse_model(AuditEventIn, item, prefix=f"events[{index}]."))
    return events


def canonical_audit_event(event_id: str, event: dict[str, Any], received_at: str) -> dict[str, Any]:
    """The stored (and, once claimed, returned) form of a stream's audit event."""
    return {"id": event_id, "type": "audit", **audit_body(event), "timestamp": received_at,
            "received_at": received_at}


@blueprint.post("/<token>/events")
@document_response(IngestOut)
async def ingest(token: str) -> Response:
    """Post one audit event, or `{"events": [...]}` (up to 100), to a stream. No auth; the
    stream is created on the first request to a new token."""
    svc = services()
    settings = svc.settings
    stream_token = parse_claim_token(token)
    ip = client_ip(settings.trusted_proxies)
    request_quota = await limit_requests(svc, ip)

    events = parse_events(await read_json_object(allow_text_plain=True), settings.stream_max_batch)
    now = utcnow()
    received_at = iso(now) or ""
    prepared: list[NewStreamEvent] = []
    redacted_total = 0
    for event in events:
        redacted, count = redact_audit_event(event.model_dump(exclude_none=True))
        redacted_total += count
        event_id = new_event_id()
        prepared.append(NewStreamEvent(
            id=event_id, idempotency_key=event.idempotency_key, received_at=now,
            body=canonical_audit_event(event_id, redacted, received_at),
        ))

    limits = StreamLimits(
        ttl=timedelta(seconds=settings.stream_ttl_seconds),
        events_per_day=settings.stream_events_per_day,
        lifetime_events=settings.stream_lifetime_events,
        creations_per_day=settings.stream_creations_per_day,
    )
    try:
        async with svc.transaction() as session:
            result = await StreamRepository(session).append(stream_token, prepared, ip, limits)
    except StreamClaimed:
        raise APIError(409, "stream_claimed", "This stream has been claimed by a workspace and accepts no more "
                       "events. Send events with the workspace's own credentials instead.") from None
    except StreamExpired:
        raise APIError(410, "stream_expired", "This stream has expired; start a new one with a new token.") from None
    except LimitExceeded as exc:
        raise limit_error(exc) from None

    if result.created:
        current_app.add_background_task(
            start_expiry_workflow, svc, str(stream_token), iso(result.stream.expires_at)
        )
    metrics.count_events("stream", "accepted", ["audit"] * len(result.ids))
    return json_response({"ids": result.ids, "redacted_count": redacted_total},
                         headers=rate_limit_headers(request_quota))


async def start_expiry_workflow(svc: Services, token: str, expires_at: str) -> None:
    """Best effort: the stream is already committed, and the hourly sweep expires any stream
    whose workflow could not be started (Temporal down)."""
    try:
        client = await svc.temporal.client()
        await asyncio.wait_for(
            client.start_workflow(
                StreamExpiryWorkflow.run, StreamExpiryInput(token=token, expires_at=expires_at),
                id=expiry_workflow_id(token), task_queue=svc.settings.task_queue,
            ),
            10,
        )
    except WorkflowAlreadyStartedError:
        pass
    except (TimeoutError, TemporalUnavailable, RPCError) as exc:
        log.warning("could not start expiry workflow for stream %s (%s); the hourly sweep will expire it",
                    token, exc)


@blueprint.get("/<token>/info")
@document_response(StreamInfoOut)
async def info(token: str) -> Response:
    """Count, status and expiry of a stream. Never any event data."""
    svc = services()
    stream_token = parse_claim_token(token)
    request_quota = await limit_requests(svc, client_ip(svc.settings.trusted_proxies))
    async with svc.transaction() as session:
        stream = await StreamRepository(session).get(stream_token)
    if stream is None:
        raise APIError(404, "stream_not_found", "No stream has this claim token.")
    return json_response(
        {
            "claim_token": str(stream.token),
            "event_count": stream.event_count,
            "status": stream.status_at(utcnow()),
            "created_at": iso(stream.created_at),
            "expires_at": iso(stream.expires_at),
        },
        headers=rate_limit_headers(request_quota),
    )


@blueprint.post("/claim")
@document_response(ClaimOut)
async def claim() -> Response:
    """Bind a stream to the caller's workspace: every event moves into the workspace in one
    transaction and the stream is locked for good. One-way; repeating it is harmless."""
    key = await authenticate_master_key()
    body = parse_model(ClaimIn, await read_json_object())
    token = parse_claim_token(body.claim_token)
    svc = services()
    async with svc.transaction() as session:
        stream = await StreamRepository(session).get(token)
    if stream is None:
        raise APIError(404, "stream_not_found", "No stream has this claim token.")
    status = stream.status_at(utcnow())
    if status == "claimed":
        return _claim_answer("claimed" if stream.claimed_by == key.workspace_id else "already_claimed",
                             stream.event_count)
    if status == "expired":
        return _claim_answer("expired", 0)

    try:
        # Starting waits for Temporal at most CONTROL_BUDGET_SECONDS; once started, the claim
        # (one transaction) is waited for.
        handle = await svc.temporal.run(lambda client: client.start_workflow(
            StreamClaimWorkflow.run,
            ClaimStreamInput(token=str(token), workspace_id=str(key.workspace_id)),
            id=claim_workflow_id(str(token)),
            task_queue=svc.settings.task_queue,
            # A claim already running for this token (maybe another workspace's) is joined,
            # not duplicated: its result tells this caller whether it won.
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        ))
        result = await asyncio.wait_for(handle.result(), CLAIM_WAIT_SECONDS)
    except (TimeoutError, TemporalUnavailable, RPCError, WorkflowFailureError) as exc:
        log.warning("claim of stream %s could not complete: %s", token, exc)
        raise APIError(503, "claim_unavailable", "The claim could not be completed right now; retry shortly. "
                       "Claiming is safe to repeat.", headers={"Retry-After": "5"}) from None
    if result.outcome == "claimed" and result.claimed_by != str(key.workspace_id):
        return _claim_answer("already_claimed", 0)
    return _claim_answer(result.outcome, result.event_count)


def _claim_answer(outcome: str, event_count: int) -> Response:
    if outcome == "claimed":
        return json_response({"event_count": event_count})
    if outcome == "already_claimed":
        raise APIError(409, "stream_already_claimed", "Another workspace has already claimed this stream.")
    if outcome == "expired":
        raise APIError(410, "stream_expired", "This stream has expired; its events are gone.")
    raise APIError(404, "stream_not_found", "No stream has this claim token.")
