"""The live stream's hub: each API process holds one Postgres connection that LISTENs on the
pubsub topic of every workspace someone is watching (`models.pubsub`). Every commit that
stores events — ingest group commits and stream claims, on any API process or worker —
NOTIFYs their ids; the hub reads those events once, formats each SSE message once, and offers
it to every matching client. A client takes at most `live_max_events_per_second` and holds at
most `live_queue_events` unsent messages; what exceeds either is dropped and counted, and the
client receives `event: dropped` with the count before its next events, so a slow or flooded
client never makes the server fall behind or grow.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict, deque

import asyncpg
import orjson

from models.pubsub import CommitListener
from telemetry import metrics

log = logging.getLogger("headwater.live")


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
            metrics.count(metrics.LIVE_DROPPED)
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
        metrics.live_clients(+1)

    async def unsubscribe(self, client: LiveClient) -> None:
        clients = self._clients.get(client.workspace_id)
        if clients is None:
            return
        if client in clients:
            clients.discard(client)
            metrics.live_clients(-1)
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


