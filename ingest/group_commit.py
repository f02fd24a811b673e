"""Group commit for ingestion: concurrent requests share one transaction and one INSERT.

Each request hands its events to `GroupCommitter.enqueue()` and waits. A lane takes
everything pending, commits it in one statement — one round trip, one transaction: the
multi-row INSERT, the pubsub NOTIFY and any `last_used_at` touch (`models.events.commit_events`)
— then answers every request of the group. Each lane has its own asyncpg connection: no ORM,
no pool, no reset query, nothing between the group and Postgres but that statement. While one
group commits, the next one gathers, so the busier the API, the larger the groups: no timer,
no added latency when idle. A failed commit fails every request of its group (they answer
503) and, being one transaction, leaves nothing half-written.

Requests take turns to prepare their events (`GroupCommitter.turn()`). Requests whose bodies
arrive together are all ready to run in the same pass of the event loop, and asyncio runs a
whole pass before anything scheduled during it: without turns, fifteen 100-event batches are
parsed back to back (~40 ms) while Postgres waits, then committed as one group while the API
waits, and the two sides take turns idling (measured: half a core idle at 15,000 events/s).
With turns, each request's events are queued as soon as they are ready and the committer and
Postgres's answers get the loop between two requests, so parsing and committing overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg

from models.canonical import CanonicalEvent
from models.contracts import RecordedViolations
from models.events import commit_events
from telemetry import metrics

log = logging.getLogger("headwater.ingest")

MAX_GROUP_EVENTS = 5000
LANES = 2  # commits overlapping: one in the database while the next one is sent
LAST_USED_EVERY_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 5.0


class CommitFailed(Exception):
    pass


@dataclass
class _Request:
    events: list[CanonicalEvent]
    violations: RecordedViolations | None
    done: asyncio.Future[dict[str, str]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommitter:
    """`LANES` tasks, each with its own connection, take the pending requests in turn. A lane
    that has committed a group answers its requests and, in the same step, sends the next group
    before those requests' responses are written: Postgres never waits for the API's replies."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._pending: list[_Request] = []
        self._wake = asyncio.Event()
        self._turn = asyncio.Lock()
        self._lanes: list[asyncio.Task] = []
        self._source_touched: dict[uuid.UUID, float] = {}
        self._closing = False

    async def start(self) -> None:
        # Connections open when a lane first has a group: the API starts (and answers 503)
        # while Postgres is down.
        self._lanes = [asyncio.create_task(self._lane(), name=f"group-commit-{n}") for n in range(LANES)]

    async def close(self) -> None:
        """Commit what is pending, then stop."""
        self._closing = True
        self._wake.set()
        await asyncio.gather(*self._lanes, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Prepare a request's events, up to `enqueue()`, in turn (see the module's doc): the
        turn is handed on only after one pass of the event loop, in which the committer takes
        what was just queued and Postgres's answers are read."""
        async with self._turn:
            yield
            await asyncio.sleep(0)

    def enqueue(self, events: list[CanonicalEvent], violations: RecordedViolations | None = None) -> asyncio.Future:
        """Queue `events` and their contract `violations` for the next group; the future gives
        {event id: original id} for messageId duplicates, or raises CommitFailed if the group's
        transaction failed."""
        if self._closing:
            raise CommitFailed("shutting down")
        request = _Request(events, violations)
        self._pending.append(request)
        self._wake.set()
        return request.done

    async def _lane(self) -> None:
        conn: asyncpg.Connection | None = None
        try:
            while True:
                if not self._pending:
                    if self._closing:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                conn = await self._commit(conn, self._take_group())
        finally:
            if conn is not None:
                conn.terminate()

    def _take_group(self) -> list[_Request]:
        group: list[_Request] = []
        size = 0
        while self._pending and (not group or size + len(self._pending[0].events) <= MAX_GROUP_EVENTS):
            request = self._pending.pop(0)
            group.append(request)
            size += len(request.events)
        return group

    async def _commit(self, conn: asyncpg.Connection | None, group: list[_Request]) -> asyncpg.Connection | None:
        """Commit one group and answer its requests; returns the connection to use next (None
        after a failure: the next group connects afresh)."""
        events = [event for request in group for event in request.events]
        violations = RecordedViolations.merged(request.violations for request in group if request.violations)
        started = time.perf_counter()
        try:
            if conn is None or conn.is_closed():
                conn = await asyncpg.connect(self.dsn, timeout=CONNECT_TIMEOUT_SECONDS)
            duplicates = await commit_events(conn, events, touch_sources=self._sources_to_touch(events),
                                             violations=violations)
        except Exception as exc:  # noqa: BLE001 — any failure fails the group's requests (503), never the lane
            log.error("group commit of %d events (%d requests) failed: %s", len(events), len(group), exc)
            metrics.count_commit(len(events), 0.0, failed=True)
            if conn is not None:
                conn.terminate()
            for request in group:
                if not request.done.done():
                    request.done.set_exception(CommitFailed(str(exc)))
            return None
        metrics.count_commit(len(events), time.perf_counter() - started, failed=False)
        for request in group:
            if not request.done.done():
                request.done.set_result(duplicates)
        return conn

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
