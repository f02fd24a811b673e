"""The forwarding activities: one batch of a rule (read after its cursor, transform, deliver,
record every event's outcome, move the cursor), a replay page, a redrive; and the waker that
tells idle rule workflows that their workspace committed events.

At least once: a batch is delivered before its cursor moves, in one transaction with its
outcomes, so a worker that dies mid-batch makes the retried activity deliver the batch again
(every request carries the event ids: `webhook-id`, `messageId`). The cursor update checks the
cursor it started from, so two runs of one batch never both record it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client

from activities.delivery import Answer, Delivery, PrivateDestination, Sender, check_public
from activities.transformations import Transformer
from models.forwarding import Destination, ForwardingRepository, ForwardingRule, matching_sql, max_in_flight
from models.pubsub import CommitListener
from models.transformations import ERROR as TRANSFORMATION_ERROR
from models.transformations import TransformationSnapshot
from settings import Settings
from workflows.params import (
    ForwardBatchInput,
    ForwardBatchResult,
    RedriveInput,
    RedriveResult,
    ReplayBatchResult,
    ReplayInput,
)

log = logging.getLogger("headwater.forwarding")

ATTEMPT_LOG_KEEP = 1000  # delivery attempts kept per rule
MAX_RETRY_AFTER_SECONDS = 3600.0
DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_MAX_RETRY_AGE_SECONDS = 24 * 3600


@dataclass
class Row:
    """An event to deliver: from the events table, or from the rule's retries."""
    id: str
    commit_xid: int
    received_at: datetime
    source_id: uuid.UUID | None
    body_json: str
    attempts: int = 0  # before this one
    first_attempt_at: datetime | None = None


@dataclass
class EventOutcome:
    outcome: str  # delivered | dropped | retry | permanent
    answer: Answer | None = None
    error: str | None = None


@dataclass
class Batch:
    """What one pass produced, to be written in one transaction."""
    outcomes: dict[str, EventOutcome] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)


def backoff(attempts: int, retry_after: float | None, base: float, cap: float) -> float:
    """Exponential with jitter (half to all of base·2^(n-1), at most `cap`), never sooner than
    the destination's Retry-After."""
    delay = min(cap, base * 2 ** max(0, attempts - 1)) * random.uniform(0.5, 1.0)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS))
    return delay


class RuleWaker:
    """Tells rule workflows that wait for events that their workspace just committed some.

    A batch first `watch()`es its workspace (LISTEN on its pubsub topic, which every commit
    NOTIFYs) and notes the workspace's generation; once caught up it `settle()`s: if anything
    was committed since it read, it goes again at once, otherwise the rule is signalled `wake`
    at the workspace's next commit, once. The check and the registration happen without an
    await between them, so no commit falls between the two. Busy rules are never signalled.
    """

    def __init__(self, client: Client, dsn: str) -> None:
        self.client = client
        self._listener = CommitListener(dsn, self._heard, self._reconnected)
        self._idle: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)  # workspace → rules
        self._generation: dict[uuid.UUID, int] = defaultdict(int)  # workspace → commits heard
        self._tasks: set[asyncio.Task] = set()

    async def watch(self, workspace_id: uuid.UUID) -> int | None:
        """LISTEN for the workspace's commits (from now on); its current generation. Never
        raises: None means "cannot tell", and the rule's idle timer covers the rest."""
        try:
            await self._listener.listen(workspace_id)
        except Exception as exc:  # noqa: BLE001 — see the docstring
            log.warning("waker: cannot listen for workspace %s: %s", workspace_id, exc)
            return None
        return self._generation[workspace_id]

    def settle(self, workspace_id: uuid.UUID, rule_id: uuid.UUID, generation: int | None) -> bool:
        """True if the workspace committed since `generation` (read again now); otherwise
        the rule is woken at its next commit."""
        if generation is None:
            return False
        if self._generation[workspace_id] != generation:
            return True
        self._idle[workspace_id].add(rule_id)
        return False

    def _reconnected(self) -> None:
        for workspace_id in self._listener.workspaces:  # commits may have gone unheard
            self._generation[workspace_id] += 1

    def _heard(self, workspace_id: uuid.UUID, _payload: str) -> None:
        self._generation[workspace_id] += 1
        for rule_id in self._idle.pop(workspace_id, set()):
            task = asyncio.create_task(self._wake(rule_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _wake(self, rule_id: uuid.UUID) -> None:
        from workflows.control import wake_forwarding  # workflows import this module

        try:
            await wake_forwarding(self.client, rule_id)
        except Exception as exc:  # noqa: BLE001 — a rule that just ended; its timer covers the rest
            log.debug("waker: could not wake %s: %s", rule_id, exc)

    async def close(self) -> None:
        await self._listener.close()


class ForwardingActivities:
    """The worker's forwarding activities; dependencies injected in worker.py."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], transformer: Transformer, http: aiohttp.ClientSession,
                 settings: Settings, waker: RuleWaker | None = None) -> None:
        self.sessions, self.transformer, self.http, self.settings = sessions, transformer, http, settings
        self.waker = waker

    # --- the rule's batch --------------------------------------------------------------------

    @activity.defn(name="forward_batch")
    async def forward_batch(self, params: ForwardBatchInput) -> ForwardBatchResult:
        async with _heartbeating():
            if params.linger_seconds:
                await asyncio.sleep(params.linger_seconds)
            return await self._forward_batch(uuid.UUID(params.rule_id), params.max_events)

    async def _forward_batch(self, rule_id: uuid.UUID, limit: int) -> ForwardBatchResult:
        async with self.sessions() as session:
            repository = ForwardingRepository(session)
            rule = await repository.rule(None, rule_id)
            if rule is None:
                return ForwardBatchResult(state="gone")
            if not rule.enabled:
                return ForwardBatchResult(state="disabled")
            generation = await self.waker.watch(rule.workspace_id) if self.waker is not None else None
            destination = await session.get(Destination, rule.destination_id)
            horizon = await repository.horizon()
            retries = await self._due_retries(session, rule, limit)
            fresh = await self._new_events(session, rule, horizon, limit)
        assert destination is not None
        started_from = (rule.cursor_xid, rule.cursor_id)
        snapshot = await self._snapshot(rule)
        held_reason = await self._held_reason(destination, snapshot)
        if held_reason is not None:
            hold = self._hold_seconds(rule.head_attempts + 1, None)
            await self._record_hold(rule, started_from, held_reason, fresh)
            return ForwardBatchResult(state="held", hold_seconds=hold, last_error=held_reason,
                                      cursor=_cursor(*started_from), head_attempts=rule.head_attempts + 1,
                                      lag_seconds=await self._lag(rule.id))

        batch = await self._run(rule, destination, snapshot, retries + fresh)
        fresh_outcomes = [batch.outcomes[row.id] for row in fresh]
        refused = [o for o in fresh_outcomes if o.outcome != "dropped"]
        destination_down = bool(refused) and all(o.outcome == "retry" for o in refused) and not any(
            batch.outcomes[r.id].outcome == "delivered" for r in retries)
        max_attempts, max_age = _retry_limits(destination)
        now = datetime.now(UTC)
        if destination_down:
            attempts = rule.head_attempts + 1
            oldest = min(row.received_at for row in fresh)
            exhausted = attempts >= max_attempts and (now - oldest).total_seconds() >= max_age
            if not exhausted:
                last = next(o for o in refused if o.answer is not None).answer
                await self._record(rule, started_from, None, batch, retries, [], now, destination, held=True)
                return ForwardBatchResult(
                    state="held", hold_seconds=self._hold_seconds(attempts, last.retry_after),
                    last_error=_error_text(last), cursor=_cursor(*started_from), head_attempts=attempts,
                    lag_seconds=await self._lag(rule.id))
            for row in fresh:  # tried often and long enough: dead letters, and the rule moves on
                row.attempts = attempts - 1
                row.first_attempt_at = rule.head_first_failed_at or now
        if len(fresh) == limit:
            new_cursor = (fresh[-1].commit_xid, fresh[-1].id)
        else:  # everything committed before the horizon has been read
            new_cursor = max(started_from, (horizon, ""))
        recorded = await self._record(rule, started_from, new_cursor, batch, retries, fresh, now, destination)
        result = ForwardBatchResult(
            state="ok", delivered=recorded["delivered"], dead_lettered=recorded["dead_lettered"],
            retrying=recorded["retrying"], more=len(fresh) == limit or len(retries) == limit,
            cursor=_cursor(*new_cursor), last_error=recorded["last_error"], lag_seconds=await self._lag(rule.id))
        if not result.more and self.waker is not None:
            result.news = self.waker.settle(rule.workspace_id, rule.id, generation)
        return result

    async def _due_retries(self, session: AsyncSession, rule: ForwardingRule, limit: int) -> list[Row]:
        rows = await session.execute(text("""
            SELECT e.id, e.commit_xid, e.received_at, e.source_id, e.body::text AS body_json,
                   r.attempts, r.first_attempt_at
            FROM forwarding_retries r JOIN events e ON e.workspace_id = :workspace_id AND e.id = r.event_id
            WHERE r.rule_id = :rule_id AND r.next_attempt_at <= now()
            ORDER BY r.next_attempt_at, r.event_id LIMIT :limit
        """), {"workspace_id": rule.workspace_id, "rule_id": rule.id, "limit": limit})
        return [Row(**row._mapping) for row in rows]

    async def _new_events(self, session: AsyncSession, rule: ForwardingRule, horizon: int, limit: int,
                          *, since: datetime | None = None, upper: tuple[int, str] | None = None,
                          after: tuple[int, str] | None = None) -> list[Row]:
        after = after or (rule.cursor_xid, rule.cursor_id)
        conditions = ["workspace_id = :workspace_id", "(commit_xid, id) > (:after_xid, :after_id)",
                      "commit_xid < :horizon"]
        values: dict[str, Any] = {"workspace_id": rule.workspace_id, "after_xid": after[0], "after_id": after[1],
                                  "horizon": horizon, "limit": limit, "event_types": rule.event_types or None,
                                  "event_names": rule.event_names or None}
        if since is not None:
            conditions.append("received_at >= :since")
            values["since"] = since
        if upper is not None:
            conditions.append("(commit_xid, id) <= (:upper_xid, :upper_id)")
            values |= {"upper_xid": upper[0], "upper_id": upper[1]}
        rows = await session.execute(text(f"""
            SELECT id, commit_xid, received_at, source_id, body::text AS body_json FROM events
            WHERE {" AND ".join(conditions)} {matching_sql(rule)}
            ORDER BY commit_xid, id LIMIT :limit
        """), values)
        return [Row(**row._mapping) for row in rows]

    async def _lag(self, rule_id: uuid.UUID) -> float:
        async with self.sessions() as session:
            return await ForwardingRepository(session).lag_seconds(rule_id)

    async def _snapshot(self, rule: ForwardingRule) -> TransformationSnapshot | None:
        """The rule's transformation version for this batch (read once: the whole batch uses it)."""
        if rule.transformation_id is None:
            return None
        return await self.transformer.snapshot(rule.transformation_id)

    async def _held_reason(self, destination: Destination, snapshot: TransformationSnapshot | None) -> str | None:
        if not destination.enabled:
            return "the destination is disabled"
        if snapshot is not None and snapshot.status == TRANSFORMATION_ERROR:
            return "the transformation is in error status; fix its code to resume"
        if not self.settings.allow_private_destinations:
            try:
                await check_public(Sender(self.http, destination.type, destination.config, []).url)
            except PrivateDestination as exc:
                return f"refused: {exc} (HEADWATER_ALLOW_PRIVATE_DESTINATIONS is off)"
        return None

    def _hold_seconds(self, attempts: int, retry_after: float | None) -> float:
        return backoff(attempts, retry_after, self.settings.retry_base_seconds, self.settings.retry_max_seconds)

    # --- transform and deliver ---------------------------------------------------------------

    async def _run(self, rule: ForwardingRule, destination: Destination, snapshot: TransformationSnapshot | None,
                   rows: list[Row]) -> Batch:
        """Each row through the batch's transformation version (if the rule has one), then to
        the destination in order."""
        batch = Batch()
        if not rows:
            return batch
        event_ids, bodies, message_ids = [], [], []
        if snapshot is not None:
            events = [orjson.loads(row.body_json) for row in rows]
            meta = {"workspace_id": str(rule.workspace_id), "rule_id": str(rule.id)}
            outcomes = await self.transformer.run(snapshot, events, meta)
            for row, outcome in zip(rows, outcomes, strict=True):
                if outcome.error is not None:
                    batch.outcomes[row.id] = EventOutcome("permanent", error=f"transformation failed: {outcome.error}")
                elif outcome.dropped:
                    batch.outcomes[row.id] = EventOutcome("dropped")
                else:
                    many = len(outcome.event_jsons) > 1 or outcome.fanned_out
                    for index, body in enumerate(outcome.event_jsons):
                        event_ids.append(row.id)
                        bodies.append(body)
                        message_ids.append(f"{row.id}.{index}" if many else row.id)
        else:
            for row in rows:
                event_ids.append(row.id)
                bodies.append(row.body_json)
                message_ids.append(row.id)
        sender = Sender(self.http, destination.type, destination.config, destination.signing_secrets(datetime.now(UTC)))
        batch.deliveries = sender.group(event_ids, bodies, message_ids)
        limit = asyncio.Semaphore(max_in_flight(destination.type, destination.config))

        async def send(delivery: Delivery) -> None:
            async with limit:
                delivery.answer = await sender.send(delivery)

        await asyncio.gather(*(send(d) for d in batch.deliveries))
        rank = {"delivered": 0, "retry": 1, "permanent": 2}
        for delivery in batch.deliveries:
            answer = delivery.answer
            assert answer is not None
            for event_id in delivery.event_ids:
                known = batch.outcomes.get(event_id)
                if known is None or rank[answer.outcome] > rank[known.outcome]:
                    batch.outcomes[event_id] = EventOutcome(answer.outcome, answer, _error_text(answer))
        return batch

    # --- recording ---------------------------------------------------------------------------

    async def _record(self, rule: ForwardingRule, started_from: tuple[int, str], new_cursor: tuple[int, str] | None,
                      batch: Batch, retries: list[Row], fresh: list[Row], now: datetime, destination: Destination,
                      *, held: bool = False) -> dict[str, Any]:
        """Write what a pass did, in one transaction; nothing if another run of this batch
        already moved the cursor."""
        max_attempts, max_age = _retry_limits(destination)
        retry_rows, dead_rows, done_ids = [], [], []
        delivered = dead = 0
        last_error = None
        for row in [*retries, *([] if held else fresh)]:
            outcome = batch.outcomes[row.id]
            attempts = row.attempts + 1
            first = row.first_attempt_at or now
            if outcome.outcome in ("delivered", "dropped"):
                delivered += outcome.outcome == "delivered"
                done_ids.append(row.id)
                continue
            last_error = outcome.error or last_error
            answer = outcome.answer
            exhausted = attempts >= max_attempts and (now - row.received_at).total_seconds() >= max_age
            if outcome.outcome == "permanent" or exhausted:
                dead += 1
                done_ids.append(row.id)
                dead_rows.append({"event_id": row.id, "attempts": attempts,
                                  "last_status": answer.status if answer else None,
                                  "response_excerpt": answer.excerpt if answer else None,
                                  "error": outcome.error, "first_attempt_at": first})
            else:
                wait = self._hold_seconds(attempts, answer.retry_after if answer else None)
                retry_rows.append({"event_id": row.id, "attempts": attempts, "first_attempt_at": first,
                                   "next_attempt_at": now + timedelta(seconds=wait),
                                   "last_status": answer.status if answer else None, "last_error": outcome.error})
        if held:
            last_error = next((o.error for o in batch.outcomes.values() if o.error), last_error)
        async with self.sessions() as session, session.begin():
            moved = await session.execute(text("""
                UPDATE forwarding_rules SET
                    cursor_xid = :cursor_xid, cursor_id = :cursor_id,
                    head_attempts = CASE WHEN :held THEN head_attempts + 1 WHEN :moved THEN 0 ELSE head_attempts END,
                    head_first_failed_at = CASE WHEN :held THEN coalesce(head_first_failed_at, now())
                                                WHEN :moved THEN NULL ELSE head_first_failed_at END,
                    delivered = delivered + :delivered, dead_lettered = dead_lettered + :dead,
                    last_error = coalesce(:last_error, last_error),
                    last_error_at = CASE WHEN :last_error IS NOT NULL THEN now() ELSE last_error_at END,
                    last_delivered_at = CASE WHEN :delivered > 0 THEN now() ELSE last_delivered_at END
                WHERE id = :rule_id AND cursor_xid = :from_xid AND cursor_id = :from_id
            """), {"rule_id": rule.id, "from_xid": started_from[0], "from_id": started_from[1],
                   "cursor_xid": (new_cursor or started_from)[0], "cursor_id": (new_cursor or started_from)[1],
                   "held": held, "moved": new_cursor is not None and new_cursor != started_from,
                   "delivered": delivered, "dead": dead, "last_error": last_error})
            if moved.rowcount == 0:  # another run of this batch recorded it (or the rule is gone)
                return {"delivered": 0, "dead_lettered": 0, "retrying": 0, "last_error": last_error}
            if done_ids:
                await session.execute(text("DELETE FROM forwarding_retries WHERE rule_id = :rule_id "
                                           "AND event_id = ANY(:ids)"), {"rule_id": rule.id, "ids": done_ids})
            if retry_rows:
                await session.execute(text("""
                    INSERT INTO forwarding_retries (rule_id, event_id, attempts, first_attempt_at, next_attempt_at,
                                                    last_status, last_error)
                    SELECT :rule_id, r.event_id, r.attempts, r.first_attempt_at, r.next_attempt_at, r.last_status,
                           r.last_error
                    FROM json_to_recordset(CAST(:rows AS json)) AS r(event_id text, attempts int,
                         first_attempt_at timestamptz, next_attempt_at timestamptz, last_status int, last_error text)
                    ON CONFLICT (rule_id, event_id) DO UPDATE SET attempts = excluded.attempts,
                        next_attempt_at = excluded.next_attempt_at, last_status = excluded.last_status,
                        last_error = excluded.last_error
                """), {"rule_id": rule.id, "rows": orjson.dumps(retry_rows).decode()})
            if dead_rows:
                await session.execute(text("""
                    INSERT INTO dead_letters (rule_id, event_id, attempts, last_status, response_excerpt, error,
                                              first_attempt_at, last_attempt_at)
                    SELECT :rule_id, d.event_id, d.attempts, d.last_status, d.response_excerpt, d.error,
                           d.first_attempt_at, now()
                    FROM json_to_recordset(CAST(:rows AS json)) AS d(event_id text, attempts int, last_status int,
                         response_excerpt text, error text, first_attempt_at timestamptz)
                    ON CONFLICT (rule_id, event_id) DO UPDATE SET attempts = excluded.attempts,
                        last_status = excluded.last_status, response_excerpt = excluded.response_excerpt,
                        error = excluded.error, last_attempt_at = now()
                """), {"rule_id": rule.id, "rows": orjson.dumps(dead_rows).decode()})
            await self._log_attempts(session, rule.id, batch, retry_ids={r["event_id"] for r in retry_rows},
                                     dead_ids={d["event_id"] for d in dead_rows}, held=held)
        return {"delivered": delivered, "dead_lettered": dead, "retrying": len(retry_rows), "last_error": last_error}

    async def _record_hold(self, rule: ForwardingRule, started_from: tuple[int, str], reason: str,
                           fresh: list[Row]) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(text("""
                UPDATE forwarding_rules SET head_attempts = head_attempts + 1, last_error = :reason,
                    last_error_at = now(), head_first_failed_at = coalesce(head_first_failed_at, now())
                WHERE id = :rule_id AND cursor_xid = :from_xid AND cursor_id = :from_id
            """), {"rule_id": rule.id, "reason": reason, "from_xid": started_from[0], "from_id": started_from[1]})
            if fresh:
                await session.execute(text("""
                    INSERT INTO delivery_attempts (rule_id, event_ids, outcome, error) VALUES (:rule_id, :ids, 'held', :reason)
                """), {"rule_id": rule.id, "ids": [row.id for row in fresh], "reason": reason})

    async def _log_attempts(self, session: AsyncSession, rule_id: uuid.UUID, batch: Batch, *, retry_ids: set[str],
                            dead_ids: set[str], held: bool) -> None:
        rows = []
        for delivery in batch.deliveries:
            answer = delivery.answer
            assert answer is not None
            if answer.outcome == "delivered":
                outcome = "delivered"
            elif held:
                outcome = "held"
            else:
                outcome = "dead_lettered" if set(delivery.event_ids) & dead_ids else "retrying"
            rows.append({"event_ids": sorted(set(delivery.event_ids)), "outcome": outcome, "status_code": answer.status,
                         "error": answer.error, "response_excerpt": answer.excerpt, "duration_ms": answer.duration_ms})
        for event_id, outcome in batch.outcomes.items():  # failed before any request
            if outcome.answer is None and outcome.outcome == "permanent":
                rows.append({"event_ids": [event_id], "outcome": "dead_lettered", "status_code": None,
                             "error": outcome.error, "response_excerpt": None, "duration_ms": None})
        if not rows:
            return
        await session.execute(text("""
            INSERT INTO delivery_attempts (rule_id, event_ids, outcome, status_code, error, response_excerpt, duration_ms)
            SELECT :rule_id, ARRAY(SELECT json_array_elements_text(a.event_ids)), a.outcome, a.status_code, a.error,
                   a.response_excerpt, a.duration_ms
            FROM json_to_recordset(CAST(:rows AS json)) AS a(event_ids json, outcome text, status_code int, error text,
                 response_excerpt text, duration_ms float8)
        """), {"rule_id": rule_id, "rows": orjson.dumps(rows).decode()})
        await session.execute(text("""
            DELETE FROM delivery_attempts WHERE rule_id = :rule_id AND seq <= (
                SELECT seq FROM delivery_attempts WHERE rule_id = :rule_id ORDER BY seq DESC OFFSET :keep LIMIT 1)
        """), {"rule_id": rule_id, "keep": ATTEMPT_LOG_KEEP})

    # --- replay and redrive ------------------------------------------------------------------

    @activity.defn(name="replay_batch")
    async def replay_batch(self, params: ReplayInput) -> ReplayBatchResult:
        """One page of a backfill: events received since `since` that the rule had already
        passed when the replay was asked for, in commit order; refused events go to retries."""
        async with _heartbeating():
            rule_id = uuid.UUID(params.rule_id)
            async with self.sessions() as session:
                rule = await ForwardingRepository(session).rule(None, rule_id)
                if rule is None:
                    return ReplayBatchResult(state="gone")
                destination = await session.get(Destination, rule.destination_id)
                rows = await self._new_events(
                    session, rule, horizon=2**62, limit=self.settings.forward_batch_size,
                    since=datetime.fromisoformat(params.since), upper=(params.upper_xid, params.upper_id),
                    after=(params.after_xid, params.after_id))
            if not rows:
                return ReplayBatchResult(state="done", after_xid=params.after_xid, after_id=params.after_id,
                                         replayed=params.replayed)
            assert destination is not None
            snapshot = await self._snapshot(rule)
            held_reason = await self._held_reason(destination, snapshot)
            if held_reason is not None:
                return ReplayBatchResult(state="held", after_xid=params.after_xid, after_id=params.after_id,
                                         replayed=params.replayed, hold_seconds=self._hold_seconds(1, None))
            batch = await self._run(rule, destination, snapshot, rows)
            now = datetime.now(UTC)
            await self._record_replay(rule, batch, rows, now, destination)
            return ReplayBatchResult(state="ok", after_xid=rows[-1].commit_xid, after_id=rows[-1].id,
                                     replayed=params.replayed + len(rows))

    async def _record_replay(self, rule: ForwardingRule, batch: Batch, rows: list[Row], now: datetime,
                             destination: Destination) -> None:
        """A replayed page's outcomes, like a batch's, without touching the cursor."""
        async with self.sessions() as session:
            current = await ForwardingRepository(session).rule(None, rule.id)
        if current is None:
            return
        at = (current.cursor_xid, current.cursor_id)
        await self._record(current, at, at, batch, rows, [], now, destination)

    @activity.defn(name="redrive_dead_letters")
    async def redrive_dead_letters(self, params: RedriveInput) -> RedriveResult:
        async with self.sessions() as session, session.begin():
            count = await ForwardingRepository(session).redrive(uuid.UUID(params.rule_id), params.event_ids)
        return RedriveResult(redriven=count)


def _retry_limits(destination: Destination) -> tuple[int, float]:
    config = destination.config
    return (int(config.get("max_attempts", DEFAULT_MAX_ATTEMPTS)),
            float(config.get("max_retry_age_seconds", DEFAULT_MAX_RETRY_AGE_SECONDS)))


def _cursor(xid: int, event_id: str) -> str:
    return f"{xid}:{event_id}"


def _error_text(answer: Answer) -> str | None:
    if answer.outcome == "delivered":
        return None
    return answer.error


class _heartbeating:
    """Heartbeats every 2 s while a batch runs, so a dead worker's batch is retried soon."""

    async def __aenter__(self) -> None:
        async def beat() -> None:
            while True:
                activity.heartbeat()
                await asyncio.sleep(2)

        self._task = asyncio.create_task(beat()) if activity.in_activity() else None

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()

