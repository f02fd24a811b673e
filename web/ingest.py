"""Source-keyed ingestion: Segment-compatible `/v1/track`, `identify`, `page`, `screen`,
`group`, `alias`, `events` and `batch`, authenticated by an event source's write key.

A 200 means committed to Postgres: every request waits for its group commit.

The endpoints are written once, against `WireRequest` (headers, query, body, client
address), so they do not depend on how the request was read. Two adapters serve them: the
blueprint below (Quart's full request machinery; it also documents the endpoints in the
OpenAPI schema), and `web.ingest_lane`, an ASGI middleware that answers the same paths before
Quart sees them, which is how the API serves them by default (see that module for why).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from quart import Blueprint, Response, request
from quart_schema import document_response, hide

from activities.redaction import redact_event_body
from ingest.contracts import enforce, public_violations
from ingest.group_commit import CommitFailed
from ingest.write_keys import Source
from models.canonical import Arrival, CanonicalEvent, EventRejected, normalize
from models.contracts import RecordedViolations
from models.ids import new_event_id, new_event_ids
from models.sources import REVOKED, Redaction
from models.timestamps import utcnow
from telemetry import metrics
from web.clientip import client_ip
from web.errors import APIError
from web.jsonio import (
    body_bytes,
    exact_numbers,
    find_nul,
    find_out_of_range,
    is_json_mimetype,
    number_out_of_range,
    parse_json_bytes,
)
from web.responses import json_response
from web.services import Services, services

blueprint = Blueprint("ingest", __name__, url_prefix="/v1")

MAX_REQUEST_BYTES = 500 * 1024
MAX_BATCH_EVENTS = 2500


@dataclass(frozen=True)
class WireRequest:
    """An ingest request as the endpoints see it, whichever adapter read it."""

    headers: Mapping[str, str]  # lower-case names
    query: Mapping[str, str]
    body: bytes
    client_ip: str | None

    @property
    def mimetype(self) -> str:
        return self.headers.get("content-type", "").partition(";")[0].strip().lower()


@dataclass(frozen=True, slots=True)
class Body:
    """A parsed ingest body, with what the cheap scans of its bytes found out."""

    data: dict[str, Any]
    may_hold_nul: bool
    exact: Any  # the body with integers kept exact, when it may hold one out of range (web.jsonio)


class TrackOut(BaseModel):
    success: bool
    id: str
    request_id: str


class ViolationBrief(BaseModel):
    path: str
    kind: str
    message: str


class Rejection(BaseModel):
    index: int
    code: str
    message: str
    violations: list[ViolationBrief] | None = None


class BatchOut(BaseModel):
    success: bool
    accepted: int
    ids: list[str]
    rejected: list[Rejection]
    request_id: str


def parse_body(wire: WireRequest) -> Body:
    """The JSON object of an ingest request: plain or gzip/deflate-encoded, at most 500 KB
    decoded. analytics.js beacons send text/plain, so that is accepted too.

    Also says whether the body may hold a NUL character: in valid JSON it can only be
    written as the escape `\\u0000`, so when those bytes are absent no event needs the walk;
    likewise for integers out of range (`web.jsonio.exact_numbers`)."""
    mimetype = wire.mimetype
    if mimetype and not (is_json_mimetype(mimetype) or mimetype == "text/plain"):
        raise APIError(415, "unsupported_media_type", "Send JSON (Content-Type: application/json).")
    raw = wire.body
    encoding = wire.headers.get("content-encoding", "").strip().lower()
    if encoding in ("gzip", "deflate"):
        try:
            decoder = zlib.decompressobj(wbits=47)  # gzip or zlib, detected from the header
            raw = decoder.decompress(raw, MAX_REQUEST_BYTES + 1)
        except zlib.error:
            raise APIError(400, "invalid_encoding", f"The body is not valid {encoding} data.") from None
    elif encoding not in ("", "identity"):
        raise APIError(415, "unsupported_encoding", "Content-Encoding must be gzip, deflate or identity.")
    if len(raw) > MAX_REQUEST_BYTES:
        raise APIError(413, "payload_too_large", f"A request may be at most {MAX_REQUEST_BYTES // 1024} KB.")
    data = parse_json_bytes(raw)
    if not isinstance(data, dict):
        raise APIError(400, "body_not_object", "The body must be a JSON object.")
    return Body(data, b"\\u0000" in raw, exact_numbers(raw))


WRITE_KEY_CHARACTERS = re.compile(r"[A-Za-z0-9_-]+")  # models.sources.new_write_key: url-safe base64


def write_key_from(wire: WireRequest, data: dict[str, Any]) -> str | None:
    """The write key, from X-Write-Key, HTTP Basic (username), ?writeKey= or the body."""
    key = wire.headers.get("x-write-key")
    if key:
        return key.strip()
    authorization = wire.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "basic" and credentials:
        try:
            username = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            raise APIError(401, "invalid_authorization", "The Basic credentials are not valid base64.") from None
        if username:
            return username
    key = wire.query.get("writeKey")
    if key:
        return key
    key = data.get("writeKey") or data.get("write_key")
    return key if isinstance(key, str) and key else None


async def authenticate(svc: Services, wire: WireRequest, data: dict[str, Any]) -> Source:
    key = write_key_from(wire, data)
    if not key:
        raise APIError(401, "missing_write_key", "Send the source's write key: X-Write-Key header, "
                       "HTTP Basic username, ?writeKey= or writeKey in the body.")
    # A key of other characters than a write key's cannot name a source: no need to ask Postgres.
    source = await svc.write_keys.lookup(key) if len(key) <= 64 and WRITE_KEY_CHARACTERS.fullmatch(key) else None
    if source is None:
        raise APIError(401, "invalid_write_key", "Unknown write key.")
    if source.status == REVOKED:
        raise APIError(401, "source_revoked", "This source has been revoked; its write key no longer works.")
    return source


def redacted(event: CanonicalEvent, mode: Redaction) -> CanonicalEvent:
    """The event with what its source's `redact` mode asks for redacted, before its contract
    judges it and before it is stored (so neither sees what redaction removes)."""
    if mode is Redaction.OFF or (mode is Redaction.AUDIT and event.type != "audit"):
        return event
    event.body, _ = redact_event_body(event.body, mode)
    return event


def _rejection(exc: EventRejected) -> APIError:
    status = 413 if exc.code == "event_too_large" else 422
    details = [{"field": exc.field, "message": exc.message}] if exc.field else None
    return APIError(status, exc.code, exc.message, details)


def _commit_failed() -> APIError:
    return APIError(503, "commit_failed", "The events could not be stored right now; nothing was kept. "
                    "Retry the request.", headers={"Retry-After": "1"})


def queue_commit(svc: Services, events: list, violations: RecordedViolations | None = None) -> asyncio.Future:
    """Queue for the group commit; await with `committed()`."""
    try:
        return svc.committer.enqueue(events, violations)
    except CommitFailed:
        raise _commit_failed() from None


async def committed(stored: asyncio.Future) -> dict[str, str]:
    """{event id: original id} for messageId duplicates, once the group is committed."""
    try:
        return await stored
    except CommitFailed:
        raise _commit_failed() from None


async def ingest_single(svc: Services, wire: WireRequest, event_type: str | None) -> dict[str, Any]:
    """One event (`/v1/track` …, or `/v1/events` with the type in the body)."""
    body = parse_body(wire)
    data = body.data
    source = await authenticate(svc, wire, data)
    if body.may_hold_nul and find_nul(data) is not None:
        raise APIError(400, "invalid_string", "Strings must not contain the NUL character (\\u0000).")
    out_of_range = find_out_of_range(body.exact)
    if out_of_range is not None:
        raise number_out_of_range(out_of_range)
    event_id = new_event_id()
    book = await svc.contracts.for_workspace(source.workspace_id)
    try:
        event = redacted(normalize(data, event_type=event_type, event_id=event_id,
                                   arrival=Arrival(source.workspace_id, source.id, utcnow(), wire.client_ip)),
                         source.redact)
    except EventRejected as exc:
        metrics.count_events("v1", "rejected", [event_type or str(data.get("type"))])
        raise _rejection(exc) from None
    recorded = RecordedViolations()
    blocked, violations = enforce(book, event, recorded)
    # A blocked event's violations are recorded; the event is not stored. One event is tens of
    # microseconds of work: unlike a batch, it needs no turn (ingest.group_commit).
    duplicates = await committed(queue_commit(svc, [] if blocked else [event], recorded))
    if blocked:
        metrics.count_events("v1", "rejected", [event.type])
        raise APIError(422, "contract_violation", "The event violates its contract, which blocks it: nothing was "
                       "stored.", public_violations(violations))
    metrics.count_events("v1", "deduplicated" if event_id in duplicates else "accepted", [event.type])
    return {"success": True, "id": duplicates.get(event_id, event_id)}


async def ingest_batch(svc: Services, wire: WireRequest) -> dict[str, Any]:
    """`{"batch": [...]}`: valid events are stored even when others are rejected."""
    body = parse_body(wire)
    data, may_hold_nul = body.data, body.may_hold_nul
    source = await authenticate(svc, wire, data)
    items = data.get("batch")
    if not isinstance(items, list):
        raise APIError(400, "invalid_batch", "The body must be {\"batch\": [...]}.")
    if len(items) > MAX_BATCH_EVENTS:
        raise APIError(413, "batch_too_large", f"A batch holds at most {MAX_BATCH_EVENTS} events; got {len(items)}.")
    envelope: dict[str, Any] = {k: data[k] for k in ("context", "integrations", "sentAt", "sent_at") if k in data}
    if may_hold_nul and find_nul(envelope) is not None:
        raise APIError(400, "invalid_string", "Strings must not contain the NUL character (\\u0000).")
    exact = body.exact if isinstance(body.exact, dict) else {}
    out_of_range = find_out_of_range({k: exact[k] for k in envelope if k in exact})
    if out_of_range is not None:
        raise number_out_of_range(out_of_range)
    exact_items = exact.get("batch") or []
    arrival = Arrival(source.workspace_id, source.id, utcnow(), wire.client_ip, envelope)
    book = await svc.contracts.for_workspace(source.workspace_id)
    events, recorded = [], RecordedViolations()
    rejected: list[dict[str, Any]] = []
    async with svc.committer.turn():
        ids = new_event_ids(len(items))
        for index, item in enumerate(items):
            try:
                if may_hold_nul and find_nul(item) is not None:
                    raise EventRejected("invalid_string", "strings must not contain the NUL character")
                if exact_items and (field := find_out_of_range(exact_items[index])) is not None:
                    refused = number_out_of_range(field)
                    raise EventRejected(refused.code, refused.message, field)
                event = redacted(normalize(item, event_type=None, event_id=ids[index], arrival=arrival), source.redact)
            except EventRejected as exc:
                message = (f"{exc.field}: {exc.message}" if exc.field and not exc.message.startswith(exc.field)
                           else exc.message)
                rejected.append({"index": index, "code": exc.code, "message": message})
                continue
            blocked, found = enforce(book, event, recorded)
            if blocked:
                rejected.append({"index": index, "code": "contract_violation", "message": "the event violates its "
                                 "contract, which blocks it", "violations": public_violations(found)})
            else:
                events.append(event)
        stored = queue_commit(svc, events, recorded) if events or recorded else None
    duplicates = await committed(stored) if stored is not None else {}
    ids = [duplicates.get(e.id, e.id) for e in events]
    metrics.count_events("v1", "accepted", [e.type for e in events if e.id not in duplicates])
    if duplicates:
        metrics.count_events("v1", "deduplicated", [e.type for e in events if e.id in duplicates])
    if rejected:
        refused_items = (items[entry["index"]] for entry in rejected)
        metrics.count_events("v1", "rejected", [item.get("type") if isinstance(item, dict) else None
                                                for item in refused_items])
    return {"success": True, "accepted": len(events), "ids": ids, "rejected": rejected}


# The ingest paths, for the ASGI lane: path -> event type (None: from the body; BATCH: /v1/batch).
BATCH = "batch"
PATHS: dict[str, str | None] = {}


async def dispatch(svc: Services, wire: WireRequest, kind: str | None) -> dict[str, Any]:
    return await (ingest_batch(svc, wire) if kind == BATCH else ingest_single(svc, wire, kind))


# The Quart adapter.

async def quart_wire(svc: Services) -> WireRequest:
    ip = client_ip(svc.settings.trusted_proxies)
    return WireRequest(
        headers={name.lower(): value for name, value in request.headers.items()}, query=request.args,
        body=await body_bytes(), client_ip=None if ip == "unknown" else ip,
    )


def _door(path: str, kind: str | None, name: str, doc: str | None = None):
    """A Quart endpoint for `/v1/{path}` (what the ingest lane serves when it is on), and the
    path in PATHS for the lane and CORS."""
    async def endpoint() -> Response:
        svc = services()
        return json_response(await dispatch(svc, await quart_wire(svc), kind))

    endpoint.__name__ = name
    endpoint.__doc__ = doc
    PATHS[f"{blueprint.url_prefix}/{path}"] = kind
    return endpoint


def _route(path: str, event_type: str | None, doc: str) -> None:
    blueprint.post(f"/{path}")(document_response(TrackOut)(_door(path, event_type, f"ingest_{path}", doc)))


_route("track", "track", "Record a user action (`event` required).")
_route("identify", "identify", "Set a user's traits.")
_route("page", "page", "Record a page view.")
_route("screen", "screen", "Record a mobile screen view.")
_route("group", "group", "Associate a user with a group (`group_id` required).")
_route("alias", "alias", "Link a previous id to a user (`previous_id` required).")
_route("events", None, "Any event type, taken from the body's `type` (track, identify, page, screen, group, "
                       "alias, or audit with the stream event fields).")


blueprint.post("/batch")(document_response(BatchOut)(_door(
    "batch", BATCH, "batch", """Up to 2,500 events of any type in `{"batch": [...]}`. Valid events are stored even when
    others are rejected; each rejection names its index.""")))

# The one-letter paths Segment's analytics.js (analytics-next) posts to, as api.segment.io
# answers them: /v1/t, /v1/i, ... for single messages and /v1/b for its batching mode. They are
# the same doors under other names, so they stay out of the API description.
SHORT_PATHS: dict[str, str | None] = {"t": "track", "i": "identify", "p": "page", "s": "screen", "g": "group",
                                      "a": "alias", "b": BATCH}


for _letter, _kind in SHORT_PATHS.items():
    blueprint.post(f"/{_letter}")(hide(_door(_letter, _kind, f"ingest_short_{_letter}")))
