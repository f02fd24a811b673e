"""Writing what a pass did: the rule's cursor and counters, its retries and dead letters, and
the log of delivery attempts. A repository: the caller owns the transaction."""

from __future__ import annotations

import uuid

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from forwarding.delivery import Outcome
from forwarding.outcomes import Batch, Settlement
from models.base import rows_affected
from models.forwarding import AttemptOutcome

ATTEMPT_LOG_KEEP = 1000  # delivery attempts kept per rule

Cursor = tuple[int, str]  # (commit_xid, event id)


class OutcomeRecorder:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record(self, rule_id: uuid.UUID, started_from: Cursor, new_cursor: Cursor | None, settled: Settlement,
                     batch: Batch, *, held: bool = False) -> bool:
        """Move the cursor from `started_from` (None: keep it) and write the outcomes; False,
        writing nothing, if another run of this batch already moved it (or the rule is gone)."""
        to = new_cursor or started_from
        moved = await self.session.execute(text("""
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
        """), {"rule_id": rule_id, "from_xid": started_from[0], "from_id": started_from[1], "cursor_xid": to[0],
               "cursor_id": to[1], "held": held, "moved": new_cursor is not None and new_cursor != started_from,
               "delivered": settled.delivered, "dead": settled.dead, "last_error": settled.last_error})
        if rows_affected(moved) == 0:
            return False
        if settled.done_ids:
            await self.session.execute(text("DELETE FROM forwarding_retries WHERE rule_id = :rule_id "
                                             "AND event_id = ANY(:ids)"), {"rule_id": rule_id, "ids": settled.done_ids})
        if settled.retry_rows:
            await self.session.execute(text("""
                INSERT INTO forwarding_retries (rule_id, event_id, attempts, first_attempt_at, next_attempt_at,
                                                last_status, last_error)
                SELECT :rule_id, r.event_id, r.attempts, r.first_attempt_at, r.next_attempt_at, r.last_status,
                       r.last_error
                FROM json_to_recordset(CAST(:rows AS json)) AS r(event_id text, attempts int,
                     first_attempt_at timestamptz, next_attempt_at timestamptz, last_status int, last_error text)
                ON CONFLICT (rule_id, event_id) DO UPDATE SET attempts = excluded.attempts,
                    next_attempt_at = excluded.next_attempt_at, last_status = excluded.last_status,
                    last_error = excluded.last_error
            """), {"rule_id": rule_id, "rows": orjson.dumps(settled.retry_rows).decode()})
        if settled.dead_rows:
            await self.session.execute(text("""
                INSERT INTO dead_letters (rule_id, event_id, attempts, last_status, response_excerpt, error,
                                          first_attempt_at, last_attempt_at)
                SELECT :rule_id, d.event_id, d.attempts, d.last_status, d.response_excerpt, d.error,
                       d.first_attempt_at, now()
                FROM json_to_recordset(CAST(:rows AS json)) AS d(event_id text, attempts int, last_status int,
                     response_excerpt text, error text, first_attempt_at timestamptz)
                ON CONFLICT (rule_id, event_id) DO UPDATE SET attempts = excluded.attempts,
                    last_status = excluded.last_status, response_excerpt = excluded.response_excerpt,
                    error = excluded.error, last_attempt_at = now()
            """), {"rule_id": rule_id, "rows": orjson.dumps(settled.dead_rows).decode()})
        counts = (settled.delivered, settled.dropped, len(settled.retry_rows), settled.dead)
        if any(counts):
            await self.session.execute(text("""
                INSERT INTO rule_volume_hourly AS v (rule_id, hour_bucket, delivered, dropped, retried, dead_lettered)
                VALUES (:rule_id, date_trunc('hour', now(), 'UTC'), :delivered, :dropped, :retried, :dead)
                ON CONFLICT (rule_id, hour_bucket) DO UPDATE SET delivered = v.delivered + excluded.delivered,
                    dropped = v.dropped + excluded.dropped, retried = v.retried + excluded.retried,
                    dead_lettered = v.dead_lettered + excluded.dead_lettered
            """), dict(zip(("delivered", "dropped", "retried", "dead"), counts, strict=True), rule_id=rule_id))
        await self._log_attempts(rule_id, batch, dead_ids={d["event_id"] for d in settled.dead_rows}, held=held)
        return True

    async def record_hold(self, rule_id: uuid.UUID, started_from: Cursor, reason: str, event_ids: list[str]) -> None:
        """The rule could not deliver at all (`reason`): one more head attempt, nothing sent."""
        await self.session.execute(text("""
            UPDATE forwarding_rules SET head_attempts = head_attempts + 1, last_error = :reason,
                last_error_at = now(), head_first_failed_at = coalesce(head_first_failed_at, now())
            WHERE id = :rule_id AND cursor_xid = :from_xid AND cursor_id = :from_id
        """), {"rule_id": rule_id, "reason": reason, "from_xid": started_from[0], "from_id": started_from[1]})
        if event_ids:
            await self.session.execute(text(
                "INSERT INTO delivery_attempts (rule_id, event_ids, outcome, error) VALUES (:rule_id, :ids, :held, :reason)"
            ), {"rule_id": rule_id, "ids": event_ids, "held": AttemptOutcome.HELD, "reason": reason})

    async def _log_attempts(self, rule_id: uuid.UUID, batch: Batch, *, dead_ids: set[str], held: bool) -> None:
        rows = []
        for delivery in batch.deliveries:
            answer = delivery.answer
            assert answer is not None
            if answer.outcome == Outcome.DELIVERED:
                outcome = AttemptOutcome.DELIVERED
            elif held:
                outcome = AttemptOutcome.HELD
            else:
                outcome = AttemptOutcome.DEAD_LETTERED if set(delivery.event_ids) & dead_ids else AttemptOutcome.RETRYING
            rows.append({"event_ids": sorted(set(delivery.event_ids)), "outcome": outcome, "status_code": answer.status,
                         "error": answer.error, "response_excerpt": answer.excerpt, "duration_ms": answer.duration_ms})
        for event_id, event in batch.outcomes.items():  # failed before any request
            if event.answer is None and event.outcome == Outcome.PERMANENT:
                rows.append({"event_ids": [event_id], "outcome": AttemptOutcome.DEAD_LETTERED, "status_code": None,
                             "error": event.error, "response_excerpt": None, "duration_ms": None})
        if not rows:
            return
        await self.session.execute(text("""
            INSERT INTO delivery_attempts (rule_id, event_ids, outcome, status_code, error, response_excerpt, duration_ms)
            SELECT :rule_id, ARRAY(SELECT json_array_elements_text(a.event_ids)), a.outcome, a.status_code, a.error,
                   a.response_excerpt, a.duration_ms
            FROM json_to_recordset(CAST(:rows AS json)) AS a(event_ids json, outcome text, status_code int, error text,
                 response_excerpt text, duration_ms float8)
        """), {"rule_id": rule_id, "rows": orjson.dumps(rows).decode()})
        await self.session.execute(text("""
            DELETE FROM delivery_attempts WHERE rule_id = :rule_id AND seq <= (
                SELECT seq FROM delivery_attempts WHERE rule_id = :rule_id ORDER BY seq DESC OFFSET :keep LIMIT 1)
        """), {"rule_id": rule_id, "keep": ATTEMPT_LOG_KEEP})
