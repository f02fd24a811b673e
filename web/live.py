"""The live event stream: `GET /api/v1/workspaces/{id}/events/live` (Server-Sent Events) and
`POST .../events/live-token` (a short-lived signed token for browsers' `EventSource`).

Each API process holds one Postgres connection that LISTENs on the pubsub topic of every
workspace someone is watching (`models.pubsub`). Every commit that stores events
— ingest group commits and stream claims, on any API process or worker — NOTIFYs their ids;
the hub reads those events once, formats each SSE message once, and offers it to every
matching client. A client takes at most `live_max_events_per_second` and holds at most
`live_queue_events` unsent messages; what exceeds either is dropped and counted, and the client
receives `event: dropped` with the count before its next events, so a slow or flooded client
never makes the server fall behind or grow.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import time
import uuid
from collections import defaultdict, deque
from datetime import UTC, datetime

import asyncpg
import orjson
from pydantic import BaseModel, ConfigDict
from quart import Blueprint, Response, g
from quart_schema import document_querystring, document_response

from models.pubsub import CommitListener
from models.timestamps import iso
from models.workspaces import MasterKey
from web.auth import authenticate_master_key, master_key_for_workspace, parse_uuid, workspace_not_found
from web.errors import APIError
from web.jsonio import parse_query
from web.responses import json_response
from web.services import services

log = logging.getLogger("headwater.live")

blueprint = Blueprint("live", __name__, url_prefix="/api/v1/workspaces/<workspace_id>/events")

TOKEN_PREFIX = "lt_"


# --- the hub ---------------------------------------------------------------------------------

class LiveClient:
    """One SSE connection: its filters, its bounded queue of formatted messages, its drops."""

    def __init__(self, workspace_id: uuid.UUID, types: set[str] | None, names: set[str] | None,
                 source_id: str | None, max_rate: int, max_queued: int) -> None:
        self.workspace_id = workspace_id
        self.types, self.names, self.source_id = types, names, source_id
        self.max_rate, self.max_queued = max_rate, max_queued
        self.queue: deque[bytes] = deque()
        self.dropped = 0
        self.ready = asyncio.Event()
        self._tokens = float(max_rate)
        self._refilled = time.monotonic()

    def matches(self, event_type: str, name: str | None, source_id: str | None) -> bool:
        return ((self.types is None or event_type in self.types) and (self.names is None or name in self.names)
                and (self.source_id is None or source_id == self.source_id))

    def offer(self, message: bytes) -> None:
        now = time.monotonic()
        self._tokens = min(float(self.max_rate), self._tokens + (now - self._refilled) * self.max_rate)
        self._refilled = now
        if self._tokens < 1 or len(self.queue) >= self.max_queued:
            self.dropped += 1  # sampled out: the client hears how many at its next write
        else:
            self._tokens -= 1
            self.queue.append(message)
        self.ready.set()

    async def next_chunk(self, timeout: float) -> bytes | None:
        """Everything waiting (a `dropped` notice first), or None after `timeout` of silence."""
        try:
            await asyncio.wait_for(self.ready.wait(), timeout)
        except TimeoutError:
            return None
        self.ready.clear()
        parts = []
        if self.dropped:
            parts.append(b"event: dropped\ndata: " + orjson.dumps({"count": self.dropped}) + b"\n\n")
            self.dropped = 0
        parts.extend(self.queue)
        self.queue.clear()
        return b"".join(parts)


class LiveHub:
    """The process's commit listener and the clients it serves."""

    def __init__(self, dsn: str) -> None:
        self._listener = CommitListener(dsn, self._heard)
        self._clients: dict[uuid.UUID, set[LiveClient]] = defaultdict(set)
        self._announcements: asyncio.Queue[tuple[uuid.UUID, list[str]]] = asyncio.Queue(maxsize=10_000)
        self._reader: asyncio.Task | None = None

    @property
    def client_count(self) -> int:
        return sum(len(clients) for clients in self._clients.values())

    async def subscribe(self, client: LiveClient) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read_announced(), name="live-hub-reader")
        await self._listener.listen(client.workspace_id)  # before the client counts: it may fail
        self._clients[client.workspace_id].add(client)

    async def unsubscribe(self, client: LiveClient) -> None:
        clients = self._clients.get(client.workspace_id)
        if clients is None:
            return
        clients.discard(client)
        if not clients:
            del self._clients[client.workspace_id]
            await self._listener.unlisten(client.workspace_id)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self._listener.close()

    def _heard(self, workspace_id: uuid.UUID, payload: str) -> None:
        clients = self._clients.get(workspace_id)
        if not clients:
            return
        ids = orjson.loads(payload)["ids"]
        try:
            self._announcements.put_nowait((workspace_id, ids))
        except asyncio.QueueFull:  # the reader is far behind: the clients hear of it as drops
            for client in clients:
                client.dropped += len(ids)
                client.ready.set()

    async def _read_announced(self) -> None:
        """Reads announced events (one query serves every client of the workspace) and offers them."""
        while True:
            workspace_id, ids = await self._announcements.get()
            clients = self._clients.get(workspace_id)
            if not clients:
                continue
            try:
                rows = await self._listener.fetch(
                    "SELECT id, type, name, source_id, body::text AS body FROM events "
                    "WHERE workspace_id = $1 AND id = ANY($2::text[]) ORDER BY id", workspace_id, ids)
            except (asyncpg.PostgresError, OSError) as exc:
                log.warning("live: could not read %d announced events: %s", len(ids), exc)
                continue
            for row in rows:
                message = (f"id: {row['id']}\nevent: {row['type']}\ndata: ".encode() + row["body"].encode()
                           + b"\n\n")
                source_id = str(row["source_id"]) if row["source_id"] else None
                for client in list(clients):
                    if client.matches(row["type"], row["name"], source_id):
                        client.offer(message)


# --- tokens ----------------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_live_token(key: MasterKey, expires: int) -> str:
    """`lt_<payload>.<signature>`: the workspace, the master key and the expiry, signed with
    HMAC-SHA256 keyed by the master key's stored hash. Revoking the key voids its tokens."""
    payload = _b64(orjson.dumps({"w": str(key.workspace_id), "k": str(key.id), "e": expires}))
    signature = hmac.new(key.key_hash.encode(), payload.encode(), hashlib.sha256).digest()
    return f"{TOKEN_PREFIX}{payload}.{_b64(signature)}"


async def verify_live_token(token: str, workspace_id: uuid.UUID) -> None:
    invalid = APIError(401, "invalid_token", "The live token is not valid or has expired; ask for a new one.")
    try:
        payload, signature = token.removeprefix(TOKEN_PREFIX).split(".")
        claims = orjson.loads(_unb64(payload))
        key_id, expires = uuid.UUID(claims["k"]), int(claims["e"])
        claimed_workspace = uuid.UUID(claims["w"])
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise invalid from None
    if not token.startswith(TOKEN_PREFIX) or expires < time.time() or claimed_workspace != workspace_id:
        raise invalid
    async with services().transaction() as session:
        key = await session.get(MasterKey, key_id)
    if key is None or key.revoked_at is not None or key.workspace_id != workspace_id:
        raise invalid
    expected = hmac.new(key.key_hash.encode(), payload.encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, _unb64(signature)):
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
