"""Group commit for ingestion: concurrent requests share one transaction and one INSERT.

Each request hands its events to `GroupCommitter.submit()` and waits. A loop takes
everything pending, commits it in one statement — one round trip, one transaction: the
multi-row INSERT, the pubsub NOTIFY and any `last_used_at` touch (`models.events.commit_events`)
— then answers every request of the group. The committer has its own small asyncpg pool:
no ORM, no pre-ping, nothing between the group and Postgres but that statement. While one
group commits, the next one gathers, so the busier the API, the larger the groups: no timer,
no added latency when idle. A failed commit fails every request of its group (they answer
503) and, being one transaction, leaves nothing half-written.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from models.canonical import CanonicalEvent
from models.events import commit_events

log = logging.getLogger("headwater.ingest")

MAX_GROUP_EVENTS = 5000
MAX_IN_FLIGHT = 2  # commits overlapping: one in the database while the next one is sent
LAST_USED_EVERY_SECONDS = 5.0


class CommitFailed(Exception):
    pass


@dataclass
class _Request:
    events: list[CanonicalEvent]
    violations: list[dict[str, Any]]
    done: asyncio.Future[dict[str, str]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommitter:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._pool: asyncpg.Pool | None = None
        self._pending: list[_Request] = []
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._inflight: set[asyncio.Task] = set()
        self._source_touched: dict[uuid.UUID, float] = {}
        self._task: asyncio.Task | None = None
        self._closing = False

    async def start(self) -> None:
        # Connections open lazily: the API starts (and answers 503) while Postgres is down.
        self._pool = asyncpg.create_pool(self.dsn, min_size=0, max_size=MAX_IN_FLIGHT, max_inactive_connection_lifetime=300)
        await self._pool
        self._task = asyncio.create_task(self._run(), name="group-commit")

    async def close(self) -> None:
        """Commit what is pending, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        if self._pool is not None:
            await self._pool.close()

    async def submit(self, events: list[CanonicalEvent], violations: list[dict[str, Any]] = ()) -> dict[str, str]:
        """Commit `events` and their contract `violations`; returns {event id: original id}
        for messageId duplicates. Raises CommitFailed if the group's transaction failed."""
        if self._closing:
            raise CommitFailed("shutting down")
        request = _Request(events, list(violations))
        self._pending.append(request)
        self._wake.set()
        return await request.done

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                await self._slots.acquire()
                group = self._take_group()
                task = asyncio.create_task(self._commit(group))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            if self._closing and not self._pending:
                return

    def _take_group(self) -> list[_Request]:
        group, size = [], 0
        while self._pending and (not group or size + len(self._pending[0].events) <= MAX_GROUP_EVENTS):
            request = self._pending.pop(0)
            group.append(request)
            size += len(request.events)
        return group

    async def _commit(self, group: list[_Request]) -> None:
        events = [event for request in group for event in request.events]
        violations = [violation for request in group for violation in request.violations]
        try:
            assert self._pool is not None, "start() the committer first"
            async with self._pool.acquire() as conn:
                duplicates = await commit_events(conn, events, touch_sources=self._sources_to_touch(events),
                                                 violations=violations)
        except Exception as exc:
            log.error("group commit of %d events (%d requests) failed: %s", len(events), len(group), exc)
            for request in group:
                if not request.done.done():
                    request.done.set_exception(CommitFailed(str(exc)))
        else:
            for request in group:
                if not request.done.done():
                    request.done.set_result(duplicates)
        finally:
            self._slots.release()

    def _sources_to_touch(self, events: list[CanonicalEvent]) -> list[uuid.UUID]:
        """Sources whose last_used_at is older than a few seconds: one UPDATE per group at
        most, never a write per event."""
        now = time.monotonic()
        due = []
        for source_id in {e.source_id for e in events if e.source_id is not None}:
            if now - self._source_touched.get(source_id, 0.0) >= LAST_USED_EVERY_SECONDS:
                self._source_touched[source_id] = now
                due.append(source_id)
        return due
