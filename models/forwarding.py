"""Destinations, forwarding rules and what delivery records: per-event retries, dead letters
and the log of delivery attempts.

A rule reads its workspace's events in commit order: every event row carries the id of the
transaction that stored it (`events.commit_xid`), and a reader only takes events of
transactions older than the oldest one still running (`pg_snapshot_xmin`), so no event can
later appear behind a rule's cursor. The cursor is (commit_xid, event id).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    delete,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAt, UUIDPrimaryKey, rows_affected
from models.paging import CreatedPlace, cut_page, encode_seq_cursor, page_by_creation
from models.volume import EventVolumeHourly

# Events committed by transactions older than every running one: the forwarding horizon.
HORIZON_SQL = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
# Requests in flight per batch unless the destination says (`max_in_flight`). One request at
# a time delivers in ingest order (batch mode, segment); single mode sends one request per
# event, so it keeps several in flight: they leave in ingest order and may arrive out of it.
SINGLE_MODE_IN_FLIGHT = 10


def max_in_flight(destination_type: str, config: dict[str, Any]) -> int:
    """The requests a destination may have in flight: its `max_in_flight`, else by mode."""
    single = destination_type == "webhook" and config.get("mode", "single") == "single"
    return config.get("max_in_flight") or (SINGLE_MODE_IN_FLIGHT if single else 1)


def events_per_pass(destination_type: str, config: dict[str, Any], default: int) -> int:
    """The events a rule's pass reads: the worker's batch size, but a warehouse takes as many
    as it loads at once (one transaction and one COPY each, so big passes are what it is fast at)."""
    if destination_type == "postgres":
        return max(default, int(config.get("max_batch_size", default)))
    return default


class Destination(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "destinations"

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(16))  # webhook | segment | postgres
    config: Mapped[dict[str, Any]] = mapped_column(JSONB)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    signing_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret: Mapped[str | None] = mapped_column(String(100))  # also signs until it expires
    previous_secret_expires_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())

    def previous_secret_signs(self, now: datetime) -> bool:
        """Whether the rotated-out secret still signs beside the current one."""
        expires = self.previous_secret_expires_at
        return self.previous_secret is not None and expires is not None and expires > now

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets that sign a request sent `now`: the current one, and the previous one
        during its overlap."""
        secrets = [self.signing_secret] if self.signing_secret else []
        if self.previous_secret is not None and self.previous_secret_signs(now):
            secrets.append(self.previous_secret)
        return secrets


class ForwardingRule(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "forwarding_rules"

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    destination_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("destinations.id", ondelete="RESTRICT"), index=True)
    event_types: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    event_names: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    transformation_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("event_transformations.id", ondelete="RESTRICT"), index=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Where the rule has read up to, in commit order.
    cursor_xid: Mapped[int] = mapped_column(BigInteger)
    cursor_id: Mapped[str] = mapped_column(String(40), default="")
    # While the destination refuses whole batches: how often the head batch has been tried.
    head_attempts: Mapped[int] = mapped_column(Integer, default=0)
    head_first_failed_at: Mapped[datetime | None]
    delivered: Mapped[int] = mapped_column(BigInteger, default=0)
    dead_lettered: Mapped[int] = mapped_column(BigInteger, default=0)  # ever (redriven ones too)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None]
    last_delivered_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ForwardingRetry(Base):
    """An event a destination refused while others of its batch went through: retried on its own."""
    __tablename__ = "forwarding_retries"
    __table_args__ = (Index("ix_forwarding_retries_rule_id_next_attempt_at", "rule_id", "next_attempt_at"),)

    rule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("forwarding_rules.id", ondelete="CASCADE"), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer)
    first_attempt_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    last_status: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class DeadLetter(Base):
    __tablename__ = "dead_letters"
    __table_args__ = (Index("ix_dead_letters_rule_id_seq", "rule_id", "seq"),
                      Index("uq_dead_letters_rule_id_event_id", "rule_id", "event_id", unique=True))

    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, server_default=text("gen_random_uuid()"))
    rule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("forwarding_rules.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(40))
    attempts: Mapped[int] = mapped_column(Integer)
    last_status: Mapped[int | None]
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    first_attempt_at: Mapped[datetime]
    last_attempt_at: Mapped[datetime]


class RuleVolumeHourly(Base):
    """What a rule did in an hour (UTC), written with its outcomes in the same transaction:
    events delivered, dropped by its transformation, scheduled for a retry (an event retried
    three times counts three times), and dead-lettered. The delivery funnel sums these."""

    __tablename__ = "rule_volume_hourly"

    rule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("forwarding_rules.id", ondelete="CASCADE"), primary_key=True)
    hour_bucket: Mapped[datetime] = mapped_column(primary_key=True)
    delivered: Mapped[int] = mapped_column(BigInteger, default=0)
    dropped: Mapped[int] = mapped_column(BigInteger, default=0)
    retried: Mapped[int] = mapped_column(BigInteger, default=0)
    dead_lettered: Mapped[int] = mapped_column(BigInteger, default=0)


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters a list, a count or a redrive means: the last status code, text in the
    error or the response excerpt (case-insensitive), a range of the last attempt. Declared once
    as SQL, so the count shown before "redrive all matching" and the redrive agree."""

    status: int | None = None
    error: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def _parts(self) -> list[tuple[str, dict[str, Any]]]:
        parts: list[tuple[str, dict[str, Any]]] = []
        if self.status is not None:
            parts.append(("last_status = :dl_status", {"dl_status": self.status}))
        if self.error:
            pattern = "%" + re.sub(r"([\\%_])", r"\\\1", self.error) + "%"
            parts.append(("(error ILIKE :dl_error OR response_excerpt ILIKE :dl_error)", {"dl_error": pattern}))
        if self.since is not None:
            parts.append(("last_attempt_at >= :dl_since", {"dl_since": self.since}))
        if self.until is not None:
            parts.append(("last_attempt_at < :dl_until", {"dl_until": self.until}))
        return parts

    def clauses(self) -> list[Any]:
        return [text(sql).bindparams(**params) for sql, params in self._parts()]

    def sql(self) -> str:
        return "".join(f" AND {sql}" for sql, _ in self._parts())

    def params(self) -> dict[str, Any]:
        return {name: value for _, params in self._parts() for name, value in params.items()}


class AttemptOutcome(StrEnum):
    """What a request to a destination (a delivery attempt) came to, for its events."""

    DELIVERED = "delivered"
    RETRYING = "retrying"
    DEAD_LETTERED = "dead_lettered"
    HELD = "held"  # the destination refused the whole batch, or the rule could not deliver


class DeliveryAttempt(Base):
    """One request to a destination (it may carry many events)."""
    __tablename__ = "delivery_attempts"
    __table_args__ = (Index("ix_delivery_attempts_rule_id_seq", "rule_id", "seq"),)

    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    rule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("forwarding_rules.id", ondelete="CASCADE"))
    attempted_at: Mapped[datetime] = mapped_column(server_default=func.now())
    event_ids: Mapped[list[str]] = mapped_column(ARRAY(Text))
    outcome: Mapped[str] = mapped_column(String(16))  # an AttemptOutcome
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float | None]


@dataclass(frozen=True)
class RuleStats:
    delivered: int
    dead_lettered: int  # dead letters now (a redrive takes them back)
    dead_lettered_total: int  # ever
    pending: int
    lag_seconds: float
    last_error: str | None
    last_error_at: datetime | None
    last_delivered_at: datetime | None
    healthy: bool  # not held, and the last thing that happened was a delivery, not an error


PENDING_COUNT_CAP = 100_000  # counting further costs more than the figure is worth


class ForwardingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- destinations ------------------------------------------------------------------------

    async def destinations(self, workspace_id: uuid.UUID, limit: int,
                           after: CreatedPlace | None) -> tuple[list[Destination], str | None]:
        return await page_by_creation(self.session, select(Destination).where(Destination.workspace_id == workspace_id),
                                      Destination, limit, after)

    async def destination(self, workspace_id: uuid.UUID, destination_id: uuid.UUID, *,
                          for_update: bool = False) -> Destination | None:
        query = select(Destination).where(Destination.workspace_id == workspace_id, Destination.id == destination_id)
        return await self.session.scalar(query.with_for_update() if for_update else query)

    async def add(self, row: Any) -> Any:
        self.session.add(row)
        await self.session.flush()
        await self.session.refresh(row)
        return row

    # --- rules -------------------------------------------------------------------------------

    async def rules(self, workspace_id: uuid.UUID, limit: int,
                    after: CreatedPlace | None) -> tuple[list[ForwardingRule], str | None]:
        query = select(ForwardingRule).where(ForwardingRule.workspace_id == workspace_id)
        return await page_by_creation(self.session, query, ForwardingRule, limit, after)

    async def rule(self, workspace_id: uuid.UUID | None, rule_id: uuid.UUID, *,
                   for_update: bool = False) -> ForwardingRule | None:
        query = select(ForwardingRule).where(ForwardingRule.id == rule_id)
        if workspace_id is not None:
            query = query.where(ForwardingRule.workspace_id == workspace_id)
        return await self.session.scalar(query.with_for_update() if for_update else query)

    async def enabled_rules(self) -> list[tuple[uuid.UUID, uuid.UUID]]:
        """(rule id, workspace id) of every enabled rule: what the worker keeps running."""
        rows = await self.session.execute(select(ForwardingRule.id, ForwardingRule.workspace_id)
                                          .where(ForwardingRule.enabled.is_(True)))
        return [(row.id, row.workspace_id) for row in rows]

    async def enabled_rule_rows(self) -> list[ForwardingRule]:
        return list(await self.session.scalars(select(ForwardingRule).where(ForwardingRule.enabled.is_(True))))

    async def horizon(self) -> int:
        return int(await self.session.scalar(text(f"SELECT {HORIZON_SQL}")))

    async def rules_using(self, *, destination_id: uuid.UUID | None = None,
                          transformation_id: uuid.UUID | None = None) -> int:
        query = select(func.count()).select_from(ForwardingRule)
        if destination_id is not None:
            query = query.where(ForwardingRule.destination_id == destination_id)
        if transformation_id is not None:
            query = query.where(ForwardingRule.transformation_id == transformation_id)
        return int(await self.session.scalar(query) or 0)

    async def stats(self, rules: list[ForwardingRule]) -> dict[uuid.UUID, RuleStats]:
        """Each rule's stats, in one statement however many rules: counters from the rule row,
        pending and lag from what is still to deliver, dead letters from their table."""
        if not rules:
            return {}
        rows = (await self.session.execute(text(_STATS), {"ids": [rule.id for rule in rules]})).all()
        by_id = {rule.id: rule for rule in rules}
        out = {}
        for row in rows:
            rule = by_id[row.id]
            last_error_at, last_delivered_at = rule.last_error_at, rule.last_delivered_at
            out[rule.id] = RuleStats(
                delivered=rule.delivered, dead_lettered=row.dead_now, dead_lettered_total=rule.dead_lettered,
                pending=row.ahead + row.retrying, lag_seconds=lag_seconds(row.oldest, row.now),
                last_error=rule.last_error, last_error_at=last_error_at, last_delivered_at=last_delivered_at,
                healthy=rule.head_attempts == 0 and (last_error_at is None or (
                    last_delivered_at is not None and last_delivered_at >= last_error_at)))
        return out

    async def lag_seconds(self, rule_id: uuid.UUID) -> float:
        """The rule's lag as the stats say it, from its row as stored now (the forwarding
        activity reports it after each batch, so the workflow's `status` agrees with the API)."""
        row = (await self.session.execute(text(_LAG), {"ids": [rule_id]})).first()
        return lag_seconds(row.oldest, row.now) if row is not None else 0.0

    # --- dead letters and attempts -----------------------------------------------------------

    async def dead_letters(self, rule_id: uuid.UUID, limit: int, before_seq: int | None,
                           matching: DeadLetterFilter | None = None) -> tuple[list[DeadLetter], str | None]:
        query = select(DeadLetter).where(DeadLetter.rule_id == rule_id, *(matching or DeadLetterFilter()).clauses())
        if before_seq is not None:
            query = query.where(DeadLetter.seq < before_seq)
        rows = list(await self.session.scalars(query.order_by(DeadLetter.seq.desc()).limit(limit + 1)))
        return cut_page(rows, limit, lambda d: encode_seq_cursor(d.seq))

    async def deliveries(self, rule_id: uuid.UUID, limit: int) -> list[DeliveryAttempt]:
        return list(await self.session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.rule_id == rule_id)
                                               .order_by(DeliveryAttempt.seq.desc()).limit(limit)))

    async def funnel(self, rule: ForwardingRule, since: datetime, until: datetime) -> dict[str, int]:
        """The rule's delivery funnel over the hours from `since`'s to `until`'s: events that
        matched its filters (from the hourly event volume), then what became of them (from its
        own hourly counts), and the retries waiting now."""
        v = RuleVolumeHourly
        start, end = func.date_trunc("hour", since, "UTC"), func.date_trunc("hour", until, "UTC")
        sums = (await self.session.execute(
            select(func.coalesce(func.sum(v.delivered), 0), func.coalesce(func.sum(v.dropped), 0),
                   func.coalesce(func.sum(v.retried), 0), func.coalesce(func.sum(v.dead_lettered), 0))
            .where(v.rule_id == rule.id, v.hour_bucket >= start, v.hour_bucket <= end))).one()
        e = EventVolumeHourly
        matched = select(func.coalesce(func.sum(e.event_count), 0)).where(
            e.workspace_id == rule.workspace_id, e.hour_bucket >= start, e.hour_bucket <= end)
        if rule.event_types:
            matched = matched.where(e.event_type.in_(rule.event_types))
        if rule.event_names:
            matched = matched.where(e.event_name.in_(rule.event_names))
        waiting = select(func.count()).select_from(ForwardingRetry).where(ForwardingRetry.rule_id == rule.id)
        # sum() of bigint is numeric in Postgres: int() for the JSON answer.
        return {"matched": int(await self.session.scalar(matched) or 0), "dropped": int(sums[1]),
                "delivered": int(sums[0]), "retried": int(sums[2]), "dead_lettered": int(sums[3]),
                "retrying_now": int(await self.session.scalar(waiting) or 0)}

    async def count_dead_letters(self, rule_id: uuid.UUID, matching: DeadLetterFilter) -> int:
        return await self.session.scalar(select(func.count()).select_from(DeadLetter).where(
            DeadLetter.rule_id == rule_id, *matching.clauses())) or 0

    async def redrive(self, rule_id: uuid.UUID, event_ids: list[str] | None,
                      matching: DeadLetterFilter | None = None) -> int:
        """Move dead letters (all that match, or those with these ids or event ids) back to be
        retried now, attempts reset."""
        matching = matching or DeadLetterFilter()
        condition = "rule_id = :rule_id" + (" AND (event_id = ANY(:event_ids) OR id::text = ANY(:event_ids))"
                                            if event_ids is not None else "") + matching.sql()
        moved = await self.session.execute(text(f"""
            WITH moved AS (DELETE FROM dead_letters WHERE {condition} RETURNING rule_id, event_id)
            INSERT INTO forwarding_retries (rule_id, event_id, attempts, first_attempt_at, next_attempt_at)
            SELECT rule_id, event_id, 0, now(), now() FROM moved
            ON CONFLICT (rule_id, event_id) DO UPDATE SET next_attempt_at = now()
        """), {"rule_id": rule_id, "event_ids": event_ids, **matching.params()})
        return rows_affected(moved)

    async def delete_rule(self, rule: ForwardingRule) -> None:
        await self.session.execute(delete(ForwardingRule).where(ForwardingRule.id == rule.id))


def lag_seconds(oldest_undelivered: datetime | None, now: datetime) -> float:
    """A rule's lag: how long the oldest event it has still to deliver (after its cursor, or
    waiting for a retry) has been waiting; 0 when there is none."""
    if oldest_undelivered is None:
        return 0.0
    return round(max((now - oldest_undelivered).total_seconds(), 0.0), 3)


# What a rule has still to deliver, for rules `r` (forwarding_rules rows): its matching events
# after its cursor, and its retries. One definition for the stats and the activity's lag.
_AFTER_CURSOR = """
    FROM events e WHERE e.workspace_id = r.workspace_id AND (e.commit_xid, e.id) > (r.cursor_xid, r.cursor_id)
      AND (coalesce(cardinality(r.event_types), 0) = 0 OR e.type = ANY(r.event_types))
      AND (coalesce(cardinality(r.event_names), 0) = 0 OR e.name = ANY(r.event_names))"""
_OLDEST_UNDELIVERED = f"""
    least((SELECT e.received_at {_AFTER_CURSOR} ORDER BY e.commit_xid, e.id LIMIT 1),
          (SELECT min(e.received_at) FROM forwarding_retries fr JOIN events e
               ON e.workspace_id = r.workspace_id AND e.id = fr.event_id WHERE fr.rule_id = r.id))"""
_LAG = f"SELECT r.id, {_OLDEST_UNDELIVERED} AS oldest, now() AS now FROM forwarding_rules r WHERE r.id = ANY(:ids)"
_STATS = f"""
SELECT r.id,
       (SELECT count(*) FROM (SELECT 1 {_AFTER_CURSOR} LIMIT {PENDING_COUNT_CAP}) AS ahead) AS ahead,
       (SELECT count(*) FROM forwarding_retries fr WHERE fr.rule_id = r.id) AS retrying,
       (SELECT count(*) FROM dead_letters d WHERE d.rule_id = r.id) AS dead_now,
       {_OLDEST_UNDELIVERED} AS oldest,
       now() AS now
FROM forwarding_rules r WHERE r.id = ANY(:ids)
"""


def matching_sql(rule: ForwardingRule) -> str:
    """The rule's filters as SQL on `events` (binds :event_types and :event_names)."""
    parts = []
    if rule.event_types:
        parts.append("AND type = ANY(:event_types)")
    if rule.event_names:
        parts.append("AND name = ANY(:event_names)")
    return " ".join(parts)
