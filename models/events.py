"""The workspace events store: every event of every type, in one canonical form.

Stream events land here when a stream is claimed; source-keyed events when they are ingested.
`body` is the canonical JSON the API returns; the columns beside it exist to filter and index.
Event ids are `evt_` + ULID, so ordering by id is ordering by arrival.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from pydantic import BaseModel, ConfigDict
from sqlalchemy import BigInteger, Index, String, Text, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.canonical import CanonicalEvent
from models.contracts import RecordedViolations
from models.paging import cut_page
from models.timestamps import IsoDateTime
from models.volume import count_and_announce


class Event(Base):
    __tablename__ = "events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # No foreign key: its check costs every ingested row a lookup and a lock of the workspace
    # (about a fifth of the group commit). Deleting a workspace deletes its events all the same,
    # by a statement-level trigger (migration 0008).
    workspace_id: Mapped[uuid.UUID]
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
    # The storing transaction's id: forwarding reads events in commit order (models.forwarding).
    commit_xid: Mapped[int] = mapped_column(BigInteger, server_default=text("pg_current_xact_id()::text::bigint"))

    __table_args__ = (
        Index("ix_events_workspace_id_id", "workspace_id", "id"),
        Index("ix_events_workspace_id_commit_xid_id", "workspace_id", "commit_xid", "id"),
        # One tenant's audit events, newest first: the customer viewer (web/viewer.py). Partial,
        # so events without a tenant (everything but audit events) cost ingest nothing here.
        Index("ix_events_workspace_id_tenant_id_id", "workspace_id", "tenant_id", "id",
              postgresql_where=text("tenant_id IS NOT NULL")),
        # Dedup of Segment messageIds, per workspace (kept as long as the event is).
        Index("uq_events_workspace_id_message_id", "workspace_id", "message_id", unique=True,
              postgresql_where=text("message_id IS NOT NULL")),
    )


class EventFilters(BaseModel):
    """The events API's filters (the list and the export): each one a column equal to the value
    given, but `since` and `until`, a range of the event `timestamp`. Declared once: a new
    filter is a field here (and its column)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: str | None = None
    name: str | None = None
    category: str | None = None
    source_id: uuid.UUID | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    actor_id: str | None = None
    tenant_id: str | None = None
    since: IsoDateTime | None = None
    until: IsoDateTime | None = None


EQUALITY_FILTERS = tuple(name for name in EventFilters.model_fields if name not in ("since", "until"))


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

    async def find(self, workspace_id: uuid.UUID, filters: EventFilters, event_id: str) -> dict[str, Any] | None:
        """The event, if it matches `filters` too."""
        row = (await self.session.execute(self._filtered(workspace_id, filters).where(Event.id == event_id))).first()
        return row.body if row is not None else None

    def _filtered(self, workspace_id: uuid.UUID, filters: EventFilters, containing: str | None = None):
        """The filters' query; `containing`: only events whose JSON has that text, any case
        (a scan: used only where the filters already narrow it, the viewer's one tenant)."""
        query = select(Event.id, Event.body).where(Event.workspace_id == workspace_id)
        if containing:
            escaped = containing.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(Event.body.cast(Text).ilike(f"%{escaped}%"))
        for column in EQUALITY_FILTERS:
            value = getattr(filters, column)
            if value is not None:
                query = query.where(getattr(Event, column) == value)
        if filters.since is not None:
            query = query.where(Event.timestamp >= filters.since)
        if filters.until is not None:
            query = query.where(Event.timestamp < filters.until)
        return query

    async def page(
        self, workspace_id: uuid.UUID, filters: EventFilters, limit: int, before_id: str | None,
        containing: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first; returns the page and the cursor for the next one (None at the end)."""
        query = self._filtered(workspace_id, filters, containing)
        if before_id is not None:
            query = query.where(Event.id < before_id)
        rows = (await self.session.execute(query.order_by(Event.id.desc()).limit(limit + 1))).all()
        page, next_cursor = cut_page(rows, limit, lambda row: encode_cursor(row.id))
        return [row.body for row in page], next_cursor

    async def ascending(self, workspace_id: uuid.UUID, filters: EventFilters, limit: int,
                        after_id: str | None, containing: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """Oldest first, after `after_id`: (id, body) pairs, for the export."""
        query = self._filtered(workspace_id, filters, containing)
        if after_id is not None:
            query = query.where(Event.id > after_id)
        return [(row.id, row.body) for row in await self.session.execute(query.order_by(Event.id).limit(limit))]


def export_line(body: dict[str, Any]) -> bytes:
    """An event's line in the NDJSON export, without its newline; also its leaf in the
    workspace's audit log (audit/), so this form must never change. The canonical form: the
    stored body (jsonb, read back by orjson) as compact JSON — keys sorted by code point at
    every level, no whitespace, UTF-8 with only the escapes JSON requires, integers as written
    and other numbers as the shortest text that reads back as the same double."""
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def export_line_of(body_text: str) -> bytes:
    """`export_line` of a body read as jsonb's text."""
    return export_line(orjson.loads(body_text))


# One group commit is ONE statement, so one round trip and one (implicit) transaction: the
# events, their hourly counts, each workspace's pubsub NOTIFY with the stored ids (delivered at
# commit), the sources' last_used_at and contract violations either all happen or none does.
# Only the canonical bodies travel, as one JSON array that Postgres parses once into jsonb; the
# indexed columns are read back out of each body (binary lookups, no second parse). Sending the
# columns beside the bodies (json_to_recordset, then body::jsonb) lexed every body twice and
# cost ~65 µs per event against ~40 (bench/ingest.py; the body holds every column's value).
_COMMIT_GROUP = """
WITH inserted AS (
    INSERT INTO events (id, workspace_id, source_id, type, name, message_id, user_id, anonymous_id,
                        tenant_id, actor_id, category, timestamp, received_at, body)
    SELECT b->>'id', (b->>'workspace_id')::uuid, (b->>'source_id')::uuid, b->>'type', b->>'name',
           b->>'message_id', b->>'user_id', b->>'anonymous_id',
           CASE WHEN b->>'type' = 'audit' THEN b->>'tenant_id' END,
           CASE WHEN b->>'type' = 'audit' THEN b->'actor'->>'id' END,
           CASE WHEN b->>'type' = 'audit' THEN b->>'category' END,
           (b->>'timestamp')::timestamptz, (b->>'received_at')::timestamptz, b
    FROM jsonb_array_elements($1::jsonb) AS b
    ON CONFLICT (workspace_id, message_id) WHERE message_id IS NOT NULL DO NOTHING
    RETURNING id, workspace_id, type, name, received_at
), touched AS (
    UPDATE event_sources SET last_used_at = now() WHERE id = ANY($2::uuid[]) RETURNING id
), violations AS (
    -- one row per contract ($3: [[contract_id, workspace_id, event_type, [violation, ...]], ...]);
    -- a warned event's violations only if the event itself was stored (not a duplicate): the
    -- array is filtered only when some event of the group was not stored
    INSERT INTO contract_violation_batches (contract_id, workspace_id, event_type, violation_count, violations)
    SELECT (g->>0)::uuid, (g->>1)::uuid, g->>2, jsonb_array_length(kept.violations), kept.violations
    FROM jsonb_array_elements($3::jsonb) AS g
    CROSS JOIN LATERAL (SELECT CASE
        WHEN (SELECT count(*) FROM inserted) = jsonb_array_length($1::jsonb) THEN g->3
        ELSE (SELECT coalesce(jsonb_agg(v ORDER BY n), '[]')
              FROM jsonb_array_elements(g->3) WITH ORDINALITY AS item(v, n)
              WHERE v->>0 IS NULL OR v->>0 IN (SELECT id FROM inserted))  -- v->>0: the event id
    END AS violations) AS kept
    WHERE jsonb_array_length(kept.violations) > 0
    RETURNING violation_count
), """ + count_and_announce("inserted") + """
SELECT ARRAY(SELECT id FROM inserted) AS ids,
       (SELECT coalesce(sum(violation_count), 0) FROM violations) AS violations,
       (SELECT count(*) FROM counted) AS counted,
       (SELECT n FROM announced) AS announced,
       (SELECT count(*) FROM touched) AS touched
"""

_EXISTING_BY_MESSAGE_ID = """
SELECT e.id, e.workspace_id, e.message_id
FROM events e JOIN unnest($1::uuid[], $2::text[]) AS m(workspace_id, message_id)
  ON e.workspace_id = m.workspace_id AND e.message_id = m.message_id
"""


async def commit_events(
    conn: asyncpg.Connection,
    events: list[CanonicalEvent],
    *,
    touch_sources: Sequence[uuid.UUID] = (),
    violations: RecordedViolations | None = None,
) -> dict[str, str]:
    """Store `events` in one statement (see `_COMMIT_GROUP`) with their hourly counts and
    pubsub NOTIFYs, a last_used_at touch of `touch_sources` and contract `violations` (those
    of a blocked event have no event id). Runs outside any explicit transaction: the statement
    is its own.

    Returns, for each event that was NOT stored because its (workspace, messageId) already
    exists, the id of the event that holds it: the caller acknowledges the original id.
    """
    batches = violations.batches() if violations else []
    if not events and not batches:
        return {}
    bodies = orjson.dumps([event.body for event in events], default=str).decode()
    row = await conn.fetchrow(_COMMIT_GROUP, bodies, list(touch_sources), orjson.dumps(batches, default=str).decode())
    inserted = set(row["ids"])
    if len(inserted) == len(events):
        return {}
    duplicates = [e for e in events if e.id not in inserted]
    rows = await conn.fetch(_EXISTING_BY_MESSAGE_ID, [e.workspace_id for e in duplicates],
                            [e.message_id for e in duplicates])
    holder = {(row["workspace_id"], row["message_id"]): row["id"] for row in rows}
    return {e.id: holder[(e.workspace_id, e.message_id)] for e in duplicates}
