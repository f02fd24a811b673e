"""Retention: each workspace's events older than its `retention_days` are deleted by the hourly
`event-retention` schedule, oldest first, in batches of BATCH rows a transaction (short ones: ingest
never waits behind them, and `FOR UPDATE SKIP LOCKED` passes over any row another transaction
holds). Only sealed events go: the audit log keeps the hashes of the leaves they were, so proofs
for the remaining events and consistency between tree heads still verify, and `audit_removals`
says which leaves retention removed, and when.

Age is the time an event was received. Event ids begin with that millisecond (models.ids), so a
bound on the id lets the primary key's order find the oldest events without a scan.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.audit import AuditRepository
from models.ids import first_event_id_at
from models.workspaces import Workspace

BATCH = 5_000


def leaf_ranges(leaves: list[int]) -> list[tuple[int, int]]:
    """Sorted leaf indexes as inclusive (first, last) runs."""
    ranges: list[tuple[int, int]] = []
    for leaf in sorted(leaves):
        if ranges and leaf == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], leaf)
        else:
            ranges.append((leaf, leaf))
    return ranges


class Retention:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def apply(self, max_batches: int) -> tuple[int, int]:
        """Every workspace with a retention period: (workspaces that lost events, events deleted)."""
        async with self.sessions() as session:
            workspaces = (await session.execute(select(Workspace.id, Workspace.retention_days)
                                                .where(Workspace.retention_days.is_not(None)))).all()
        touched = deleted = 0
        for workspace_id, days in workspaces:
            assert days is not None  # selected so
            cutoff = datetime.now(UTC) - timedelta(days=days)
            removed = 0
            for _ in range(max_batches):
                batch = await self.remove_batch(workspace_id, cutoff)
                removed += batch
                if batch < BATCH:
                    break
            touched += removed > 0
            deleted += removed
        return touched, deleted

    async def remove_batch(self, workspace_id: uuid.UUID, cutoff: datetime) -> int:
        """Delete up to BATCH sealed events received before `cutoff`, and record their leaves."""
        async with self.sessions() as session, session.begin():
            repository = AuditRepository(session)
            audit_log = await repository.log(workspace_id)
            if audit_log is None:
                return 0  # nothing sealed yet: nothing may go
            ids = list(await session.scalars(text("""
                SELECT id FROM events
                WHERE workspace_id = :workspace_id AND id < :floor AND received_at < :cutoff
                  AND (commit_xid, id) <= (:sealed_xid, :sealed_id)
                ORDER BY id LIMIT :batch FOR UPDATE SKIP LOCKED"""), {
                "workspace_id": workspace_id, "floor": first_event_id_at(cutoff), "cutoff": cutoff,
                "sealed_xid": audit_log.sealed_xid, "sealed_id": audit_log.sealed_id, "batch": BATCH}))
            if not ids:
                return 0
            leaves = await repository.leaves_of(workspace_id, ids)
            await session.execute(text("DELETE FROM events WHERE workspace_id = :workspace_id AND id = ANY(:ids)"),
                                  {"workspace_id": workspace_id, "ids": ids})
            await repository.record_removals(workspace_id, leaf_ranges(list(leaves.values())))
        return len(ids)
