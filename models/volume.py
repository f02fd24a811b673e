"""Hourly event volume: one row per (workspace, hour, type, name) with an exact count.

The rows are kept by the statements that store events — the ingest group commit and the
stream claim — in the same transaction, so a count always equals the number of stored events
of its hour (by `received_at`, in UTC). Reading 24 hours is a range scan of at most
24 × (types × names) rows, whatever the size of the events table.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String, Text, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.pubsub import pubsub_topic_sql
from models.timestamps import iso


class EventVolumeHourly(Base):
    __tablename__ = "event_volume_hourly"

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"),
                                                    primary_key=True)
    hour_bucket: Mapped[datetime] = mapped_column(primary_key=True)
    event_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    event_name: Mapped[str] = mapped_column(Text, primary_key=True)  # '' for events without a name
    event_count: Mapped[int] = mapped_column(BigInteger)


def count_and_announce(stored: str) -> str:
    """Two CTEs, `counted` and `announced`, for a statement that stores events: its CTE named
    `stored` RETURNs (id, workspace_id, type, name, received_at) of the events it stored; they
    are counted into their hours and announced on each workspace's pubsub topic with their ids,
    200 per NOTIFY (a payload holds at most 8,000 bytes). Rows are upserted in key order, so
    two concurrent commits lock shared rows in the same order and cannot deadlock."""
    return f"""
counted AS (
    INSERT INTO event_volume_hourly AS v (workspace_id, hour_bucket, event_type, event_name, event_count)
    SELECT workspace_id, date_trunc('hour', received_at, 'UTC'), type, coalesce(name, ''), count(*)
    FROM {stored} GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (workspace_id, hour_bucket, event_type, event_name)
    DO UPDATE SET event_count = v.event_count + excluded.event_count
    RETURNING 1
), announced AS (
    SELECT count(pg_notify({pubsub_topic_sql("c.workspace_id")},
                           json_build_object('count', c.n, 'last_id', c.ids[c.n], 'ids', c.ids)::text)) AS n
    FROM (SELECT workspace_id, count(*)::int AS n, array_agg(id ORDER BY id) AS ids
          FROM (SELECT workspace_id, id, (row_number() OVER (PARTITION BY workspace_id ORDER BY id) - 1) / 200 AS chunk
                FROM {stored}) AS numbered
          GROUP BY workspace_id, chunk) AS c
)
"""


class VolumeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def hourly(self, workspace_id: uuid.UUID, hours: int, now: datetime | None = None) -> list[dict[str, Any]]:
        """The last `hours` hours, the current one included, oldest first; only hours with events."""
        v = EventVolumeHourly
        current_hour = func.date_trunc("hour", func.now() if now is None else now, "UTC")
        start = current_hour - timedelta(hours=hours - 1)
        rows = await self.session.execute(
            select(v.event_type, v.event_name, v.hour_bucket, v.event_count)
            .where(v.workspace_id == workspace_id, v.hour_bucket >= start)
            .order_by(v.hour_bucket, v.event_type, v.event_name))
        return [{"event_type": r.event_type, "event_name": r.event_name or None, "hour_bucket": iso_hour(r.hour_bucket),
                 "event_count": r.event_count} for r in rows]


def iso_hour(value: datetime) -> str:
    """`2024-01-15T14:00:00Z`: the reference shows hour buckets without milliseconds."""
    return (iso(value) or "").replace(".000Z", "Z")
