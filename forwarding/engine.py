"""ForwardingEngine: one batch of a rule, one page of a replay, a redrive (see the package's
doc for the at-least-once rule)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Protocol

import aiohttp
import orjson
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode, Tracer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.transformations import Transformer
from forwarding.delivery import Delivery, Outcome, PrivateDestination, Sender, check_public
from forwarding.outcomes import Batch, EventOutcome, RetryLimits, Settlement, backoff, error_text, settle
from forwarding.reader import EventReader, Row
from forwarding.recorder import Cursor, OutcomeRecorder
from forwarding.warehouse import WarehouseLoader, WarehousePools
from models.forwarding import (
    DeadLetterFilter,
    Destination,
    ForwardingRepository,
    ForwardingRule,
    events_per_pass,
    max_in_flight,
)
from models.timestamps import parse_iso
from models.transformations import ERROR as TRANSFORMATION_ERROR
from models.transformations import TransformationSnapshot
from settings import Settings
from telemetry import metrics
from workflows.params import (
    BatchState,
    ForwardBatchResult,
    RedriveInput,
    RedriveResult,
    ReplayBatchResult,
    ReplayInput,
)

NO_HORIZON = 2**62  # a replay reads below the rule's cursor: everything there is committed


class Waker(Protocol):
    """Tells idle rules that their workspace committed events (the worker's RuleWaker)."""

    async def watch(self, workspace_id: uuid.UUID) -> int | None: ...

    def settle(self, workspace_id: uuid.UUID, rule_id: uuid.UUID, generation: int | None) -> bool: ...


def cursor_text(cursor: Cursor) -> str:
    return f"{cursor[0]}:{cursor[1]}"


def measure(rule_id: uuid.UUID, rows: list[Row], settled: Settlement, batch: Batch, *, held: int = 0) -> None:
    """A recorded pass in the worker's metrics (`held`: events the rule holds at its cursor)."""
    metrics.count_forwarding(
        str(rule_id), delivered_at=[row.received_at for row in rows if batch.outcomes[row.id].outcome == Outcome.DELIVERED],
        retried=len(settled.retry_rows) + held, dead=settled.dead,
        statuses=[(d.answer.status, d.answer.outcome == Outcome.DELIVERED) for d in batch.deliveries if d.answer],
        now=datetime.now(UTC))


class ForwardingEngine:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], transformer: Transformer,
                 http: aiohttp.ClientSession, settings: Settings, waker: Waker | None = None,
                 tracer: Tracer | None = None, warehouses: WarehousePools | None = None) -> None:
        self.sessions, self.transformer, self.http, self.settings = sessions, transformer, http, settings
        self.warehouses = warehouses or WarehousePools()
        self.waker = waker
        self.tracer = tracer or trace.NoOpTracer()  # spans inside the activity's (telemetry/tracing.py)

    # --- a rule's batch ----------------------------------------------------------------------

    async def forward_batch(self, rule_id: uuid.UUID, limit: int) -> ForwardBatchResult:
        async with self.sessions() as session:
            repository = ForwardingRepository(session)
            rule = await repository.rule(None, rule_id)
            if rule is None:
                return ForwardBatchResult(state=BatchState.GONE)
            if not rule.enabled:
                return ForwardBatchResult(state=BatchState.DISABLED)
            generation = await self.waker.watch(rule.workspace_id) if self.waker is not None else None
            destination = await session.get(Destination, rule.destination_id)
            assert destination is not None
            limit = events_per_pass(destination.type, destination.config, limit)
            horizon = await repository.horizon()
            reader = EventReader(session)
            retries = await reader.due_retries(rule, limit)
            fresh = await reader.after_cursor(rule, horizon, limit)
        started_from = (rule.cursor_xid, rule.cursor_id)
        snapshot = await self._snapshot(rule)
        held_reason = await self._held_reason(destination, snapshot)
        if held_reason is not None:
            async with self.sessions() as session, session.begin():
                await OutcomeRecorder(session).record_hold(rule.id, started_from, held_reason, [r.id for r in fresh])
                lag = await ForwardingRepository(session).lag_seconds(rule.id)
            return self._held(started_from, self.hold_seconds(rule.head_attempts + 1, None), held_reason,
                              rule.head_attempts + 1, lag)

        batch = await self._run(rule, destination, snapshot, retries + fresh)
        limits = RetryLimits.of(destination.config)
        now = datetime.now(UTC)
        refused = [batch.outcomes[row.id] for row in fresh if batch.outcomes[row.id].outcome != Outcome.DROPPED]
        destination_down = bool(refused) and all(o.outcome == Outcome.RETRY for o in refused) and not any(
            batch.outcomes[r.id].outcome == Outcome.DELIVERED for r in retries)
        if destination_down:
            attempts = rule.head_attempts + 1
            oldest = min(row.received_at for row in fresh)
            if not limits.exhausted(attempts, (now - oldest).total_seconds()):
                # The destination refused the whole batch: the cursor stays, the rule holds.
                settled = settle(retries, batch, now, limits, self.hold_seconds)
                settled.last_error = next((o.error for o in batch.outcomes.values() if o.error), settled.last_error)
                recorded, lag = await self._record(rule.id, started_from, None, settled, batch, held=True)
                if recorded:
                    measure(rule.id, retries, settled, batch, held=len(fresh))
                last = next(o for o in refused if o.answer is not None).answer
                assert last is not None
                return self._held(started_from, self.hold_seconds(attempts, last.retry_after), error_text(last),
                                  attempts, lag)
            for row in fresh:  # tried often and long enough: dead letters, and the rule moves on
                row.attempts = attempts - 1
                row.first_attempt_at = rule.head_first_failed_at or now
        if len(fresh) == limit:
            new_cursor = (fresh[-1].commit_xid, fresh[-1].id)
        else:  # everything committed before the horizon has been read
            new_cursor = max(started_from, (horizon, ""))
        settled = settle(retries + fresh, batch, now, limits, self.hold_seconds)
        recorded, lag = await self._record(rule.id, started_from, new_cursor, settled, batch)
        if recorded:
            measure(rule.id, retries + fresh, settled, batch)
        else:
            settled = Settlement(last_error=settled.last_error)  # another run of this batch recorded it
        result = ForwardBatchResult(
            state=BatchState.OK, delivered=settled.delivered, dead_lettered=settled.dead,
            retrying=len(settled.retry_rows), more=len(fresh) == limit or len(retries) == limit,
            cursor=cursor_text(new_cursor), last_error=settled.last_error, lag_seconds=lag)
        if not result.more and self.waker is not None:
            result.news = self.waker.settle(rule.workspace_id, rule.id, generation)
        return result

    @staticmethod
    def _held(at: Cursor, hold_seconds: float, error: str | None, attempts: int, lag: float) -> ForwardBatchResult:
        return ForwardBatchResult(state=BatchState.HELD, hold_seconds=hold_seconds, last_error=error,
                                  cursor=cursor_text(at), head_attempts=attempts, lag_seconds=lag)

    async def _record(self, rule_id: uuid.UUID, started_from: Cursor, new_cursor: Cursor | None, settled: Settlement,
                      batch: Batch, *, held: bool = False) -> tuple[bool, float]:
        """Write the pass's outcomes; whether they were written (not by another run of the
        batch), and the rule's lag after them, read in the same transaction."""
        async with self.sessions() as session, session.begin():
            recorded = await OutcomeRecorder(session).record(rule_id, started_from, new_cursor, settled, batch,
                                                              held=held)
            return recorded, await ForwardingRepository(session).lag_seconds(rule_id)

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
                await check_public(self._sender(destination, signed=False).url)
            except PrivateDestination as exc:
                return f"refused: {exc} (HEADWATER_ALLOW_PRIVATE_DESTINATIONS is off)"
        return None

    def _sender(self, destination: Destination, *, signed: bool = True) -> Sender | WarehouseLoader:
        """What delivers to the destination: HTTP (webhook, segment) or a load (postgres)."""
        if destination.type == "postgres":
            return WarehouseLoader(self.warehouses, destination.config)
        secrets = destination.signing_secrets(datetime.now(UTC)) if signed else []
        return Sender(self.http, destination.type, destination.config, secrets)

    def hold_seconds(self, attempts: int, retry_after: float | None) -> float:
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
            with self.tracer.start_as_current_span("transform", attributes={
                    "headwater.rule_id": str(rule.id), "headwater.transformation_id": str(rule.transformation_id),
                    "headwater.transformation_version": snapshot.key[1], "headwater.events": len(events)}):
                outcomes = await self.transformer.run(snapshot, events, meta)
            for row, outcome in zip(rows, outcomes, strict=True):
                if outcome.error is not None:
                    batch.outcomes[row.id] = EventOutcome(Outcome.PERMANENT,
                                                          error=f"transformation failed: {outcome.error}")
                elif outcome.dropped:
                    batch.outcomes[row.id] = EventOutcome(Outcome.DROPPED)
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
        sender = self._sender(destination)
        batch.deliveries = sender.group(event_ids, bodies, message_ids)
        in_flight = asyncio.Semaphore(max_in_flight(destination.type, destination.config))

        async def send(delivery: Delivery) -> None:
            async with in_flight:
                with self.tracer.start_as_current_span("deliver", kind=SpanKind.CLIENT, attributes={
                        "headwater.rule_id": str(rule.id), "headwater.destination_type": destination.type,
                        "headwater.events": len(delivery.event_ids), "server.address": sender.host}) as span:
                    delivery.answer = answer = await sender.send(delivery)  # its traceparent: this span
                    if answer.status is not None:
                        span.set_attribute("http.response.status_code", answer.status)
                    if answer.outcome != Outcome.DELIVERED:
                        span.set_status(StatusCode.ERROR, answer.error)

        await asyncio.gather(*(send(d) for d in batch.deliveries))
        rank = {Outcome.DELIVERED: 0, Outcome.RETRY: 1, Outcome.PERMANENT: 2}
        for delivery in batch.deliveries:
            answer = delivery.answer
            assert answer is not None
            for event_id in delivery.event_ids:  # an event fanned out: its worst answer counts
                known = batch.outcomes.get(event_id)
                if known is None or rank[answer.outcome] > rank[known.outcome]:
                    batch.outcomes[event_id] = EventOutcome(answer.outcome, answer, error_text(answer))
        return batch

    # --- replay and redrive ------------------------------------------------------------------

    async def replay_batch(self, params: ReplayInput) -> ReplayBatchResult:
        """One page of a backfill: events received since `since` that the rule had already
        passed when the replay was asked for, in commit order; refused events go to retries."""
        async with self.sessions() as session:
            rule = await ForwardingRepository(session).rule(None, uuid.UUID(params.rule_id))
            if rule is None:
                return ReplayBatchResult(state=BatchState.GONE)
            destination = await session.get(Destination, rule.destination_id)
            rows = await EventReader(session).after_cursor(
                rule, NO_HORIZON, self.settings.forward_batch_size, since=datetime.fromisoformat(params.since),
                upper=(params.upper_xid, params.upper_id), after=(params.after_xid, params.after_id))
        if not rows:
            return ReplayBatchResult(state=BatchState.DONE, after_xid=params.after_xid, after_id=params.after_id,
                                     replayed=params.replayed)
        assert destination is not None
        snapshot = await self._snapshot(rule)
        if await self._held_reason(destination, snapshot) is not None:
            return ReplayBatchResult(state=BatchState.HELD, hold_seconds=self.hold_seconds(1, None),
                                     after_xid=params.after_xid, after_id=params.after_id, replayed=params.replayed)
        batch = await self._run(rule, destination, snapshot, rows)
        # Recorded like a batch's outcomes, without moving the cursor.
        async with self.sessions() as session:
            current = await ForwardingRepository(session).rule(None, rule.id)
        if current is not None:
            at = (current.cursor_xid, current.cursor_id)
            settled = settle(rows, batch, datetime.now(UTC), RetryLimits.of(destination.config), self.hold_seconds)
            async with self.sessions() as session, session.begin():
                await OutcomeRecorder(session).record(current.id, at, at, settled, batch)
            measure(current.id, rows, settled, batch)
        return ReplayBatchResult(state=BatchState.OK, after_xid=rows[-1].commit_xid, after_id=rows[-1].id,
                                 replayed=params.replayed + len(rows))

    async def redrive(self, params: RedriveInput) -> RedriveResult:
        async with self.sessions() as session, session.begin():
            matching = DeadLetterFilter(status=params.status, error=params.error,
                                        since=parse_iso(params.since) if params.since else None,
                                        until=parse_iso(params.until) if params.until else None)
            count = await ForwardingRepository(session).redrive(uuid.UUID(params.rule_id), params.event_ids, matching)
        return RedriveResult(redriven=count)
