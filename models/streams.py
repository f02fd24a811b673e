"""Anonymous streams: a claim token, its events (kept apart from workspace events until a
claim moves them), and the rules that guard both.

Concurrency: every write to a stream first locks its row (`SELECT ... FOR UPDATE`), so an
append, a claim and an expiry of the same stream run one after another, never interleaved.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    delete,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, rows_affected
from models.rate_limits import LimitExceeded, Quota, consume
from models.timestamps import utcnow
from models.volume import count_and_announce

ACTIVE, CLAIMED, EXPIRED = "active", "claimed", "expired"


class Stream(Base):
    __tablename__ = "streams"

    token: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    event_count: Mapped[int] = mapped_column(Integer, default=0)
    creator_ip: Mapped[str | None] = mapped_column(String(64))
    claimed_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("workspaces.id", ondelete="SET NULL"))
    claimed_at: Mapped[datetime | None]

    def status_at(self, now: datetime) -> str:
        """An active stream past its expiry is expired, even before the purge has run."""
        if self.status == ACTIVE and self.expires_at <= now:
            return EXPIRED
        return self.status


class StreamEvent(Base):
    __tablename__ = "stream_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    token: Mapped[uuid.UUID] = mapped_column(ForeignKey("streams.token", ondelete="CASCADE"))
    idempotency_key: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime]
    body: Mapped[dict[str, Any]] = mapped_column(JSONB)

    __table_args__ = (
        Index("ix_stream_events_token_id", "token", "id"),
        Index(
            "uq_stream_events_token_idempotency_key",
            "token",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
    )


class StreamClaimed(Exception):
    pass


class StreamExpired(Exception):
    pass


@dataclass(frozen=True)
class StreamLimits:
    ttl: timedelta
    events_per_day: int
    lifetime_events: int
    creations_per_day: int


@dataclass(frozen=True)
class NewStreamEvent:
    """An event ready to store: validated, redacted, given its id and canonical body."""

    id: str
    idempotency_key: str | None
    received_at: datetime
    body: dict[str, Any]


@dataclass(frozen=True)
class AppendResult:
    ids: list[str]
    created: bool
    stream: Stream
    daily_quota: Quota | None


@dataclass(frozen=True)
class ClaimOutcome:
    outcome: str  # "claimed" | "already_claimed" | "not_found" | "expired"
    event_count: int = 0
    claimed_by: uuid.UUID | None = None


class StreamRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, token: uuid.UUID) -> Stream | None:
        return await self.session.get(Stream, token)

    async def lock(self, token: uuid.UUID) -> Stream | None:
        return (
            await self.session.scalars(
                select(Stream).where(Stream.token == token).with_for_update().execution_options(populate_existing=True)
            )
        ).first()

    async def append(
        self, token: uuid.UUID, events: list[NewStreamEvent], client_ip: str, limits: StreamLimits
    ) -> AppendResult:
        """Store `events` in the stream, creating it on first use. All or nothing.

        Raises StreamClaimed, StreamExpired or LimitExceeded; the caller's transaction must
        then be rolled back, so a refused request leaves no trace.
        """
        now = utcnow()
        stream = await self.lock(token)
        created = False
        if stream is None:
            inserted = await self.session.execute(
                pg_insert(Stream)
                .values(token=token, status=ACTIVE, created_at=now, expires_at=now + limits.ttl,
                        event_count=0, creator_ip=client_ip)
                .on_conflict_do_nothing(index_elements=["token"])
                .returning(Stream.token)
            )
            created = inserted.scalar() is not None
            if created:
                await consume(
                    self.session, key=f"stream-creations:{client_ip}", window=timedelta(days=1),
                    limit=limits.creations_per_day, code="stream_creation_limit",
                    what="New streams per day from this IP",
                )
            stream = await self.lock(token)
            assert stream is not None
        status = stream.status_at(now)
        if status == CLAIMED:
            raise StreamClaimed()
        if status == EXPIRED:
            raise StreamExpired()

        ids, fresh = await self._resolve_idempotency(token, events)
        quota = None
        if fresh:
            lifetime_left = limits.lifetime_events - stream.event_count
            if len(fresh) > lifetime_left:
                fits = max(lifetime_left, 0)
                raise LimitExceeded(
                    "stream_lifetime_limit",
                    f"A stream holds at most {limits.lifetime_events} events; {fits} more would fit. "
                    "Claim the stream to send more.",
                    Quota(limit=limits.lifetime_events, remaining=fits,
                          reset_after=max(int((stream.expires_at - now).total_seconds()), 1)),
                    fits,
                )
            quota = await consume(
                self.session, key=f"stream-events:{token}", window=timedelta(days=1),
                limit=limits.events_per_day, amount=len(fresh), code="stream_daily_limit",
                what="Events per day for this stream",
            )
            await self.session.execute(
                insert(StreamEvent),
                [
                    {"id": e.id, "token": token, "idempotency_key": e.idempotency_key,
                     "received_at": e.received_at, "body": e.body}
                    for e in fresh
                ],
            )
            stream.event_count += len(fresh)  # safe read-modify-write: we hold the row lock
            await self.session.flush()
        return AppendResult(ids=ids, created=created, stream=stream, daily_quota=quota)

    async def _resolve_idempotency(
        self, token: uuid.UUID, events: list[NewStreamEvent]
    ) -> tuple[list[str], list[NewStreamEvent]]:
        """Map repeats (of earlier requests or within this one) to the first event's id."""
        keys = [e.idempotency_key for e in events if e.idempotency_key is not None]
        known: dict[str, str] = {}
        if keys:
            rows = await self.session.execute(
                select(StreamEvent.idempotency_key, StreamEvent.id).where(
                    StreamEvent.token == token, StreamEvent.idempotency_key.in_(keys)
                )
            )
            known = {key: event_id for key, event_id in rows.all() if key is not None}
        ids: list[str] = []
        fresh: list[NewStreamEvent] = []
        for event in events:
            key = event.idempotency_key
            if key is not None and key in known:
                ids.append(known[key])
                continue
            if key is not None:
                known[key] = event.id
            ids.append(event.id)
            fresh.append(event)
        return ids, fresh

    async def claim(self, token: uuid.UUID, workspace_id: uuid.UUID) -> ClaimOutcome:
        """Move every event of the stream into the workspace and lock the stream.

        Idempotent: claiming again for the same workspace reports the same count and moves
        nothing, because the first claim's transaction moved and deleted the events.
        """
        stream = await self.lock(token)
        if stream is None:
            return ClaimOutcome("not_found")
        status = stream.status_at(utcnow())
        if status == CLAIMED:
            outcome = "claimed" if stream.claimed_by == workspace_id else "already_claimed"
            return ClaimOutcome(outcome, stream.event_count, stream.claimed_by)
        if status == EXPIRED:
            return ClaimOutcome("expired")
        # Counted into the hour each event was received in, and announced like ingested events.
        count = (await self.session.execute(
            text(
                """
                WITH inserted AS (
                    INSERT INTO events (id, workspace_id, type, name, tenant_id, actor_id, category,
                                        timestamp, received_at, body)
                    SELECT id, :workspace_id, 'audit', body->>'action', body->>'tenant_id',
                           body->'actor'->>'id', body->>'category', received_at, received_at,
                           body || jsonb_build_object('workspace_id', CAST(:workspace_text AS text))
                    FROM stream_events WHERE token = :token
                    ON CONFLICT (id) DO NOTHING
                    RETURNING id, workspace_id, type, name, received_at
                ), """ + count_and_announce("inserted") + """
                SELECT (SELECT count(*) FROM inserted) AS moved, (SELECT count(*) FROM counted) AS counted,
                       (SELECT n FROM announced) AS announced
                """
            ),
            {"workspace_id": workspace_id, "workspace_text": str(workspace_id), "token": token},
        )).scalar_one()
        await self.session.execute(delete(StreamEvent).where(StreamEvent.token == token))
        await self.session.execute(
            update(Stream)
            .where(Stream.token == token)
            .values(status=CLAIMED, claimed_by=workspace_id, claimed_at=utcnow(), event_count=count)
        )
        return ClaimOutcome("claimed", count, workspace_id)

    async def expire(self, token: uuid.UUID) -> int:
        """Delete an active stream's events and mark it expired. Returns events deleted."""
        stream = await self.lock(token)
        if stream is None or stream.status != ACTIVE:
            return 0
        return await self._purge([token])

    async def sweep_expired(self, limit: int = 1000) -> int:
        """Expire active streams past their expiry (for timers that never ran). Returns streams."""
        tokens = list(
            await self.session.scalars(
                select(Stream.token)
                .where(Stream.status == ACTIVE, Stream.expires_at <= utcnow())
                .order_by(Stream.expires_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        if tokens:
            await self._purge(tokens)
        return len(tokens)

    async def _purge(self, tokens: list[uuid.UUID]) -> int:
        deleted = await self.session.execute(delete(StreamEvent).where(StreamEvent.token.in_(tokens)))
        await self.session.execute(update(Stream).where(Stream.token.in_(tokens)).values(status=EXPIRED))
        return rows_affected(deleted)
