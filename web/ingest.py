"""Source-keyed ingestion: Segment-compatible `/v1/track`, `identify`, `page`, `screen`,
`group`, `events` and `batch`, authenticated by an event source's write key.

A 200 means committed to Postgres: every request waits for its group commit.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
import zlib
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel
from quart import Blueprint, Response, request
from quart_schema import document_response

from models.canonical import EventRejected, normalize
from models.events import new_event_id
from models.sources import REVOKED, SourceRepository
from models.timestamps import utcnow
from web.clientip import client_ip
from web.errors import APIError
from web.group_commit import CommitFailed
from web.jsonio import find_nul, is_json_mimetype
from web.responses import json_response
from web.services import Services, services

blueprint = Blueprint("ingest", __name__, url_prefix="/v1")

MAX_REQUEST_BYTES = 500 * 1024
MAX_BATCH_EVENTS = 2500
KEY_CACHE_SECONDS = 1.0  # a revoked key stops working on every process within this (+ a query)


@dataclass(frozen=True)
class Source:
    id: uuid.UUID
    workspace_id: uuid.UUID
    status: str


class WriteKeyCache:
    """Write key → source, remembered for a second per process (misses too), so the hot
    path does not query Postgres per request and a revocation still lands within 2 s."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, Source | None]] = {}

    async def lookup(self, svc: Services, key: str) -> Source | None:
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and now - hit[0] < KEY_CACHE_SECONDS:
            return hit[1]
        async with svc.sessions() as session:
            row = await SourceRepository(session).by_key(key)
        source = Source(row.id, row.workspace_id, row.status) if row is not None else None
        if len(self._entries) > 100_000:
            self._entries.clear()
        self._entries[key] = (now, source)
        return source


class TrackOut(BaseModel):
    success: bool
    id: str
    request_id: str


class Rejection(BaseModel):
    index: int
    code: str
    message: str


class BatchOut(BaseModel):
    success: bool
    accepted: int
    ids: list[str]
    rejected: list[Rejection]
    request_id: str


async def read_body() -> dict[str, Any]:
    """The JSON object of an ingest request: plain or gzip/deflate-encoded, at most 500 KB
    decoded. analytics.js beacons send text/plain, so that is accepted too."""
    mimetype = request.mimetype
    if mimetype and not (is_json_mimetype(mimetype) or mimetype == "text/plain"):
        raise APIError(415, "unsupported_media_type", "Send JSON (Content-Type: application/json).")
    raw = await request.get_data(as_text=False)
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
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
    if not raw.strip():
        raise APIError(400, "empty_body", "The request body is empty; send a JSON object.")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise APIError(400, "invalid_json", f"The body is not valid UTF-8 JSON: {exc.msg}",
                       {"position": exc.pos}) from None
    if not isinstance(data, dict):
        raise APIError(400, "body_not_object", "The body must be a JSON object.")
    return data


def write_key_from(data: dict[str, Any]) -> str | None:
    """The write key, from X-Write-Key, HTTP Basic (username), ?writeKey= or the body."""
    key = request.headers.get("X-Write-Key")
    if key:
        return key.strip()
    authorization = request.headers.get("Authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "basic" and credentials:
        try:
            username = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            raise APIError(401, "invalid_authorization", "The Basic credentials are not valid base64.") from None
        if username:
            return username
    key = request.args.get("writeKey")
    if key:
        return key
    key = data.get("writeKey") or data.get("write_key")
    return key if isinstance(key, str) and key else None


async def authenticate(svc: Services, data: dict[str, Any]) -> Source:
    key = write_key_from(data)
    if not key:
        raise APIError(401, "missing_write_key", "Send the source's write key: X-Write-Key header, "
                       "HTTP Basic username, ?writeKey= or writeKey in the body.")
    source = await svc.write_keys.lookup(svc, key) if len(key) <= 64 else None
    if source is None:
        raise APIError(401, "invalid_write_key", "Unknown write key.")
    if source.status == REVOKED:
        raise APIError(401, "source_revoked", "This source has been revoked; its write key no longer works.")
    return source


def request_ip(svc: Services) -> str | None:
    ip = client_ip(svc.settings.trusted_proxies)
    return None if ip == "unknown" else ip


def _rejection(exc: EventRejected) -> APIError:
    status = 413 if exc.code == "event_too_large" else 422
    details = [{"field": exc.field, "message": exc.message}] if exc.field else None
    return APIError(status, exc.code, exc.message, details)


async def commit(svc: Services, events: list) -> dict[str, str]:
    try:
        return await svc.committer.submit(events)
    except CommitFailed:
        raise APIError(503, "commit_failed", "The events could not be stored right now; nothing was kept. "
                       "Retry the request.", headers={"Retry-After": "1"}) from None


async def ingest_one(event_type: str | None) -> Response:
    svc = services()
    data = await read_body()
    source = await authenticate(svc, data)
    if find_nul(data) is not None:
        raise APIError(400, "invalid_string", "Strings must not contain the NUL character (\\u0000).")
    event_id = new_event_id()
    try:
        event = normalize(data, event_type=event_type, event_id=event_id, workspace_id=source.workspace_id,
                          source_id=source.id, received_at=utcnow(), client_ip=request_ip(svc))
    except EventRejected as exc:
        raise _rejection(exc) from None
    duplicates = await commit(svc, [event])
    return json_response({"success": True, "id": duplicates.get(event_id, event_id)})


def _route(path: str, event_type: str | None, doc: str):
    async def endpoint() -> Response:
        return await ingest_one(event_type)

    endpoint.__name__ = f"ingest_{path}"
    endpoint.__doc__ = doc
    blueprint.post(f"/{path}")(document_response(TrackOut)(endpoint))


_route("track", "track", "Record a user action (`event` required).")
_route("identify", "identify", "Set a user's traits.")
_route("page", "page", "Record a page view.")
_route("screen", "screen", "Record a mobile screen view.")
_route("group", "group", "Associate a user with a group (`group_id` required).")
_route("alias", "alias", "Link a previous id to a user (`previous_id` required).")
_route("events", None, "Any event type, taken from the body's `type` (track, identify, page, screen, group, "
                       "alias, or audit with the stream event fields).")


@blueprint.post("/batch")
@document_response(BatchOut)
async def batch() -> Response:
    """Up to 2,500 events of any type in `{"batch": [...]}`. Valid events are stored even when
    others are rejected; each rejection names its index."""
    svc = services()
    data = await read_body()
    source = await authenticate(svc, data)
    items = data.get("batch")
    if not isinstance(items, list):
        raise APIError(400, "invalid_batch", "The body must be {\"batch\": [...]}.")
    if len(items) > MAX_BATCH_EVENTS:
        raise APIError(413, "batch_too_large", f"A batch holds at most {MAX_BATCH_EVENTS} events; got {len(items)}.")
    envelope = {k: data[k] for k in ("context", "integrations", "sentAt", "sent_at") if k in data}
    if find_nul(envelope) is not None:
        raise APIError(400, "invalid_string", "Strings must not contain the NUL character (\\u0000).")
    received_at = utcnow()
    ip = request_ip(svc)
    events, rejected = [], []
    for index, item in enumerate(items):
        try:
            if find_nul(item) is not None:
                raise EventRejected("invalid_string", "strings must not contain the NUL character")
            events.append(normalize(item, event_type=None, event_id=new_event_id(), workspace_id=source.workspace_id,
                                    source_id=source.id, received_at=received_at, client_ip=ip, envelope=envelope))
        except EventRejected as exc:
            message = f"{exc.field}: {exc.message}" if exc.field and not exc.message.startswith(exc.field) else exc.message
            rejected.append({"index": index, "code": exc.code, "message": message})
    duplicates = await commit(svc, events) if events else {}
    ids = [duplicates.get(e.id, e.id) for e in events]
    return json_response({"success": True, "accepted": len(events), "ids": ids, "rejected": rejected})
