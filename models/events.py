"""The workspace events store: every event of every type, in one canonical form.

Stream events land here when a stream is claimed; source-keyed events when they are ingested.
`body` is the canonical JSON the API returns; the columns beside it exist to filter and index.
Event ids are `evt_` + ULID, so ordering by id is ordering by arrival.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import ForeignKey, Index, String, Text, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column
from ulid import ULID

from models.base import Base
from models.canonical import CanonicalEvent


def new_event_id() -> str:
    return f"evt_{ULID()}"


class Event(Base):
    __tablename__ = "events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(Text)
    source_id: Mapped[uuid.UUID | None]
    message_id: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[str | None] = mapped_column(Text)
    anonymous_id: Mapped[str | None] = mapped_column(Text)
    tenant_id: Mapped[str | None] = mapped_column(Text)
    actor_id: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(String(16))
    timestamp: Mapped[datetime]
    received_at: Mapped[datetime]
    body: Mapped[dict[str, Any]] = mapped_column(JSONB)

    __table_args__ = (
        Index("ix_events_workspace_id_id", "workspace_id", "id"),
        # Dedup of Segment messageIds, per workspace (kept as long as the event is).
        Index("uq_events_workspace_id_message_id", "workspace_id", "message_id", unique=True,
              postgresql_where=text("message_id IS NOT NULL")),
    )


@dataclass(frozen=True)
class EventFilters:
    type: str | None = None
    name: str | None = None
    category: str | None = None
    source_id: uuid.UUID | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    actor_id: str | None = None
    tenant_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def encode_cursor(event_id: str) -> str:
    return base64.urlsafe_b64encode(event_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """Raises ValueError for anything that is not a cursor we issued."""
    padded = cursor + "=" * (-len(cursor) % 4)
    value = base64.urlsafe_b64decode(padded.encode()).decode()
    if not value.startswith("evt_") or len(value) > 40:
        raise ValueError("not an events cursor")
    return value


class EventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, workspace_id: uuid.UUID, event_id: str) -> dict[str, Any] | None:
        return (
            await self.session.scalars(
                select(Event.body).where(Event.workspace_id == workspace_id, Event.id == event_id)
            )
        ).first()

    async def page(
        self, workspace_id: uuid.UUID, filters: EventFilters, limit: int, before_id: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first; returns the page and the cursor for the next one (None at the end)."""
        query = select(Event.id, Event.body).where(Event.workspace_id == workspace_id)
        for column in ("type", "name", "category", "source_id", "user_id", "anonymous_id", "actor_id", "tenant_id"):
            value = getattr(filters, column)
            if value is not None:
                query = query.where(getattr(Event, column) == value)
        if filters.since is not None:
            query = query.where(Event.timestamp >= filters.since)
        if filters.until is not None:
            query = query.where(Event.timestamp < filters.until)
        if before_id is not None:
            query = query.where(Event.id < before_id)
        rows = (await self.session.execute(query.order_by(Event.id.desc()).limit(limit + 1))).all()
        next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
        return [row.body for row in rows[:limit]], next_cursor


_INSERT_MANY = """
INSERT INTO events (id, workspace_id, source_id, type, name, message_id, user_id, anonymous_id,
                    tenant_id, actor_id, category, timestamp, received_at, body)
SELECT * FROM unnest($1::text[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $8::text[], $9::text[], $10::text[], $11::text[], $12::timestamptz[],
                     $13::timestamptz[], $14::jsonb[])
ON CONFLICT (workspace_id, message_id) WHERE message_id IS NOT NULL DO NOTHING
RETURNING id
"""

_EXISTING_BY_MESSAGE_ID = """
SELECT e.id, e.workspace_id, e.message_id
FROM events e JOIN unnest($1::uuid[], $2::text[]) AS m(workspace_id, message_id)
  ON e.workspace_id = m.workspace_id AND e.message_id = m.message_id
"""


async def insert_events(session: AsyncSession, events: list[CanonicalEvent]) -> dict[str, str]:
    """Insert events in one statement (one round trip whatever their number).

    Returns, for each event that was NOT stored because its (workspace, messageId) already
    exists, the id of the event that holds it: the caller acknowledges the original id.
    """
    if not events:
        return {}
    conn = (await (await session.connection()).get_raw_connection()).driver_connection
    columns = list(zip(*(
        (e.id, e.workspace_id, e.source_id, e.type, e.name, e.message_id, e.user_id, e.anonymous_id,
         e.tenant_id, e.actor_id, e.category, e.timestamp, e.received_at, orjson.dumps(e.body).decode())
        for e in events
    )))
    inserted = {row["id"] for row in await conn.fetch(_INSERT_MANY, *columns)}
    if len(inserted) == len(events):
        return {}
    duplicates = [e for e in events if e.id not in inserted]
    rows = await conn.fetch(_EXISTING_BY_MESSAGE_ID, [e.workspace_id for e in duplicates],
                            [e.message_id for e in duplicates])
    holder = {(row["workspace_id"], row["message_id"]): row["id"] for row in rows}
    return {e.id: holder[(e.workspace_id, e.message_id)] for e in duplicates}
