"""The audit log's tables: per workspace its key pair and sealing state (`audit_logs`), its
leaves in chunks of 256 (`audit_chunks`: leaf hashes and event ids, in commit order), the
complete subtrees above a chunk (`audit_nodes`), a signed tree head per seal
(`audit_tree_heads`) and what the check found (`audit_mismatches`). The engine is in audit/.

A chunk is a complete subtree of level 8 once full: the hashes below it are computed from its
256 leaf hashes when a proof needs them (microseconds) instead of stored (a row each).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, LargeBinary, SmallInteger, String, Text, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base

CHUNK_LEVEL = 8
CHUNK_LEAVES = 1 << CHUNK_LEVEL
HASH_BYTES = 32


class AuditLog(Base):
    __tablename__ = "audit_logs"

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # Ed25519, 32 raw bytes
    private_key: Mapped[bytes] = mapped_column(LargeBinary)  # Ed25519, 32 raw bytes
    tree_size: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    frontier: Mapped[bytes] = mapped_column(LargeBinary, server_default=text("''::bytea"))  # audit.merkle.Frontier
    # The last event sealed, in commit order: sealing goes on after it.
    sealed_xid: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    sealed_id: Mapped[str] = mapped_column(Text, server_default=text("''"))
    sealed_at: Mapped[datetime | None]
    # The check's place: the next leaf it re-hashes, and how many times it went through them all.
    checked_leaves: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    check_passes: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    checked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class AuditChunk(Base):
    __tablename__ = "audit_chunks"

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    chunk_index: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # its leaves: from chunk_index·256
    leaf_hashes: Mapped[bytes] = mapped_column(LargeBinary)  # 32 bytes a leaf
    event_ids: Mapped[list[str]] = mapped_column(ARRAY(Text))
    # Its last event in commit order: an event's chunk is the first whose last is not before it.
    last_xid: Mapped[int] = mapped_column(BigInteger)
    last_id: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_audit_chunks_workspace_id_last", "workspace_id", "last_xid", "last_id"),)


class AuditNode(Base):
    __tablename__ = "audit_nodes"

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True)  # ≥ CHUNK_LEVEL
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hash: Mapped[bytes] = mapped_column(LargeBinary)


class AuditTreeHead(Base):
    __tablename__ = "audit_tree_heads"

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary)
    timestamp: Mapped[str] = mapped_column(String(24))  # exactly as signed: RFC 3339, UTC, ms
    signature: Mapped[bytes] = mapped_column(LargeBinary)


class AuditMismatch(Base):
    __tablename__ = "audit_mismatches"

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    leaf_index: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_id: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))  # "altered" | "missing"
    found_at: Mapped[datetime] = mapped_column(server_default=func.now())


class AuditRemoval(Base):
    """Leaves first_leaf..last_leaf (inclusive) whose events retention deleted; their hashes stay."""

    __tablename__ = "audit_removals"

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    first_leaf: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    last_leaf: Mapped[int] = mapped_column(BigInteger)
    removed_at: Mapped[datetime] = mapped_column(server_default=func.now())


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def log(self, workspace_id: uuid.UUID, *, for_update: bool = False) -> AuditLog | None:
        query = select(AuditLog).where(AuditLog.workspace_id == workspace_id)
        return await self.session.scalar(query.with_for_update() if for_update else query)

    async def create_log(self, workspace_id: uuid.UUID, public_key: bytes, private_key: bytes) -> None:
        """The workspace's log, unless another transaction made it first."""
        await self.session.execute(insert(AuditLog).values(workspace_id=workspace_id, public_key=public_key,
                                                           private_key=private_key)
                                   .on_conflict_do_nothing(index_elements=["workspace_id"]))

    async def workspaces_to_seal(self, horizon: int, limit: int) -> list[uuid.UUID]:
        """Workspaces with events committed (below the horizon) after their last sealed one."""
        rows = await self.session.execute(text("""
            SELECT w.id FROM workspaces w LEFT JOIN audit_logs a ON a.workspace_id = w.id
            WHERE EXISTS (SELECT 1 FROM events e WHERE e.workspace_id = w.id
                            AND (e.commit_xid, e.id) > (coalesce(a.sealed_xid, 0), coalesce(a.sealed_id, ''))
                            AND e.commit_xid < :horizon)
            LIMIT :limit"""), {"horizon": horizon, "limit": limit})
        return [row.id for row in rows]

    async def unsealed(self, log: AuditLog, horizon: int, limit: int) -> list[tuple[str, int]]:
        """(id, commit_xid) of the next events to seal, in commit order (the index alone)."""
        rows = await (await self._driver()).fetch("""
            SELECT id, commit_xid FROM events
            WHERE workspace_id = $1 AND (commit_xid, id) > ($2, $3) AND commit_xid < $4
            ORDER BY commit_xid, id LIMIT $5""", log.workspace_id, log.sealed_xid, log.sealed_id, horizon, limit)
        return [(row[0], row[1]) for row in rows]

    async def _driver(self) -> Any:
        """The session's asyncpg connection, for the seal's reads of tens of thousands of rows
        (SQLAlchemy's rows cost more than the query)."""
        connection = await self.session.connection()
        return (await connection.get_raw_connection()).driver_connection

    async def chunk(self, workspace_id: uuid.UUID, chunk_index: int) -> AuditChunk | None:
        return await self.session.get(AuditChunk, (workspace_id, chunk_index))

    async def chunks(self, workspace_id: uuid.UUID, indexes: list[int]) -> dict[int, AuditChunk]:
        if not indexes:
            return {}
        rows = await self.session.scalars(select(AuditChunk).where(AuditChunk.workspace_id == workspace_id,
                                                                   AuditChunk.chunk_index.in_(indexes)))
        return {row.chunk_index: row for row in rows}

    async def chunks_from(self, workspace_id: uuid.UUID, first: int, count: int) -> list[AuditChunk]:
        rows = await self.session.scalars(select(AuditChunk).where(
            AuditChunk.workspace_id == workspace_id, AuditChunk.chunk_index >= first,
            AuditChunk.chunk_index < first + count).order_by(AuditChunk.chunk_index))
        return list(rows)

    async def nodes(self, workspace_id: uuid.UUID, keys: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        if not keys:
            return {}
        rows = await self.session.execute(text("""
            SELECT n.level, n.index, n.hash FROM audit_nodes n
            JOIN unnest(CAST(:levels AS smallint[]), CAST(:indexes AS bigint[])) AS k(level, index)
              ON n.level = k.level AND n.index = k.index
            WHERE n.workspace_id = :workspace_id"""), {"workspace_id": workspace_id,
                                                        "levels": [level for level, _ in keys],
                                                        "indexes": [index for _, index in keys]})
        return {(row[0], row[1]): row[2] for row in rows}

    async def leaf_of(self, workspace_id: uuid.UUID, event_id: str) -> int | None:
        """The event's leaf index, if it is sealed (and still stored)."""
        return (await self.leaves_of(workspace_id, [event_id])).get(event_id)

    async def tree_head(self, workspace_id: uuid.UUID, tree_size: int | None = None) -> AuditTreeHead | None:
        query = select(AuditTreeHead).where(AuditTreeHead.workspace_id == workspace_id)
        if tree_size is not None:
            return await self.session.scalar(query.where(AuditTreeHead.tree_size == tree_size))
        return await self.session.scalar(query.order_by(AuditTreeHead.tree_size.desc()).limit(1))

    async def bodies(self, workspace_id: uuid.UUID, event_ids: list[str]) -> dict[str, str]:
        """The stored events' jsonb text, by id (those still stored)."""
        rows = await (await self._driver()).fetch(
            "SELECT id, body::text FROM events WHERE workspace_id = $1 AND id = ANY($2::text[])", workspace_id, event_ids)
        return {row[0]: row[1] for row in rows}

    async def record_mismatches(self, workspace_id: uuid.UUID, found: list[tuple[int, str, str]]) -> set[int]:
        """Record what the check found; the leaves not found before."""
        if not found:
            return set()
        rows = await self.session.execute(insert(AuditMismatch).values([
            {"workspace_id": workspace_id, "leaf_index": index, "event_id": event_id, "kind": kind}
            for index, event_id, kind in found]).on_conflict_do_nothing().returning(AuditMismatch.leaf_index))
        return {row.leaf_index for row in rows}

    async def mismatches(self, workspace_id: uuid.UUID, limit: int) -> tuple[int, list[AuditMismatch]]:
        total = await self.session.scalar(select(func.count()).select_from(AuditMismatch)
                                          .where(AuditMismatch.workspace_id == workspace_id))
        rows = await self.session.scalars(select(AuditMismatch).where(AuditMismatch.workspace_id == workspace_id)
                                          .order_by(AuditMismatch.leaf_index).limit(limit))
        return int(total or 0), list(rows)

    async def leaves_of(self, workspace_id: uuid.UUID, event_ids: list[str]) -> dict[str, int]:
        """The leaf index of each sealed event (by id) of those given."""
        rows = await self.session.execute(text("""
            SELECT e.id, c.chunk_index * :chunk + array_position(c.event_ids, e.id) - 1 AS leaf
            FROM events e
            JOIN LATERAL (SELECT chunk_index, event_ids FROM audit_chunks c
                          WHERE c.workspace_id = e.workspace_id AND (c.last_xid, c.last_id) >= (e.commit_xid, e.id)
                          ORDER BY c.last_xid, c.last_id LIMIT 1) c ON true
            WHERE e.workspace_id = :workspace_id AND e.id = ANY(:ids)"""),
            {"workspace_id": workspace_id, "ids": event_ids, "chunk": CHUNK_LEAVES})
        return {row.id: row.leaf for row in rows if row.leaf is not None}

    async def record_removals(self, workspace_id: uuid.UUID, ranges: list[tuple[int, int]]) -> None:
        if ranges:
            await self.session.execute(insert(AuditRemoval).values([
                {"workspace_id": workspace_id, "first_leaf": first, "last_leaf": last} for first, last in ranges])
                .on_conflict_do_nothing())

    async def removals(self, workspace_id: uuid.UUID, below: int | None = None) -> list[AuditRemoval]:
        query = select(AuditRemoval).where(AuditRemoval.workspace_id == workspace_id)
        if below is not None:
            query = query.where(AuditRemoval.first_leaf < below)
        return list(await self.session.scalars(query.order_by(AuditRemoval.first_leaf)))

    async def logs_to_check(self) -> list[uuid.UUID]:
        return list(await self.session.scalars(select(AuditLog.workspace_id).where(AuditLog.tree_size > 0)))
