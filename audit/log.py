"""AuditLedger: sealing (events committed since the last seal become leaves, then a signed tree
head), proofs (inclusion and consistency, from stored complete subtrees), and the check that
re-hashes stored events against their sealed leaves.

Sealing reads in commit order — (commit_xid, id), below the horizon under which every
transaction has finished, as forwarding reads — so a leaf's place never changes once sealed:
an event committed later always lands after it. Each seal is one transaction holding the
workspace's log row, so two sealers (two workers) take turns rather than interleave.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audit import merkle, signing
from models.audit import (
    CHUNK_LEAVES,
    CHUNK_LEVEL,
    HASH_BYTES,
    AuditChunk,
    AuditLog,
    AuditMismatch,
    AuditNode,
    AuditRemoval,
    AuditRepository,
    AuditTreeHead,
)
from models.events import export_line_of
from models.forwarding import ForwardingRepository
from telemetry import metrics

log = logging.getLogger("headwater.audit")

SEAL_BATCH = 50_000  # leaves per seal transaction; a larger backlog takes several
READERS = 4  # connections reading a seal's event bodies at once
CHECK_PAGE = 5_000  # leaves the check reads at once


class NotSealed(Exception):
    """The event is not (yet) a leaf of the log, or not of a tree that small."""


class BadTreeSize(Exception):
    pass


@dataclass
class Proof:
    leaf_index: int
    tree_size: int
    audit_path: list[bytes]


@dataclass
class CheckReport:
    checked: int = 0
    found: list[tuple[int, str, str]] = field(default_factory=list)  # (leaf index, event id, kind)


class Removed:
    """Membership in a workspace's removed leaf ranges (sorted, from audit_removals)."""

    def __init__(self, removals: list[AuditRemoval]) -> None:
        self.firsts = [r.first_leaf for r in removals]
        self.lasts = [r.last_leaf for r in removals]

    def __contains__(self, leaf: int) -> bool:
        at = bisect.bisect_right(self.firsts, leaf) - 1
        return at >= 0 and leaf <= self.lasts[at]


def split_hashes(packed: bytes) -> list[bytes]:
    return [packed[i:i + HASH_BYTES] for i in range(0, len(packed), HASH_BYTES)]


def head_json(workspace_id: uuid.UUID, head: AuditTreeHead) -> dict[str, Any]:
    return {**signing.tree_head(str(workspace_id), head.tree_size, head.root_hash, head.timestamp),
            "signature": signing.b64(head.signature)}


class AuditLedger:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    # --- the log and its key ----------------------------------------------------------------

    async def _log(self, repository: AuditRepository, workspace_id: uuid.UUID, *, for_update: bool = False) -> AuditLog:
        """The workspace's log, made (with its key pair and the empty tree's head) on first use."""
        found = await repository.log(workspace_id, for_update=for_update)
        if found is not None:
            return found
        public, private = signing.new_key_pair()
        await repository.create_log(workspace_id, public, private)
        made = await repository.log(workspace_id, for_update=for_update)
        assert made is not None
        if await repository.tree_head(workspace_id, 0) is None:
            await self._sign(repository.session, made, merkle.EMPTY_ROOT)
        return made

    async def status(self, workspace_id: uuid.UUID,
                     listed: int) -> tuple[AuditLog, int, int, list[AuditMismatch]]:
        """The log, how many leaves retention removed, how many mismatches the check found
        and the first `listed` of them."""
        async with self.sessions() as session, session.begin():
            repository = AuditRepository(session)
            audit_log = await self._log(repository, workspace_id)
            removed = sum(r.last_leaf - r.first_leaf + 1 for r in await repository.removals(workspace_id))
            count, found = await repository.mismatches(workspace_id, listed)
        return audit_log, removed, count, found

    async def public_key(self, workspace_id: uuid.UUID) -> bytes:
        async with self.sessions() as session, session.begin():
            return (await self._log(AuditRepository(session), workspace_id)).public_key

    async def _sign(self, session: AsyncSession, audit_log: AuditLog, root: bytes) -> None:
        timestamp = signing.now_timestamp()
        head = signing.tree_head(str(audit_log.workspace_id), audit_log.tree_size, root, timestamp)
        await session.execute(insert(AuditTreeHead).values(
            workspace_id=audit_log.workspace_id, tree_size=audit_log.tree_size, root_hash=root, timestamp=timestamp,
            signature=signing.sign(audit_log.private_key, head)).on_conflict_do_nothing())

    # --- sealing ----------------------------------------------------------------------------

    async def seal_all(self, max_workspaces: int) -> tuple[int, int]:
        """Seal every workspace with unsealed events (up to `max_workspaces`): (workspaces,
        leaves added)."""
        async with self.sessions() as session:
            repository = AuditRepository(session)
            horizon = await ForwardingRepository(session).horizon()
            workspaces = await repository.workspaces_to_seal(horizon, max_workspaces)
        leaves = 0
        for workspace_id in workspaces:
            while (added := await self.seal(workspace_id)) == SEAL_BATCH:
                leaves += added
            leaves += added
        return len(workspaces), leaves

    async def seal(self, workspace_id: uuid.UUID) -> int:
        """One seal: up to SEAL_BATCH events committed since the last become leaves, and the
        new tree's head is signed; how many leaves were added."""
        async with self.sessions() as session, session.begin():
            repository = AuditRepository(session)
            audit_log = await self._log(repository, workspace_id, for_update=True)
            horizon = await ForwardingRepository(session).horizon()
            rows = await repository.unsealed(audit_log, horizon, SEAL_BATCH)
            if not rows:
                return 0
            bodies = await self._read_bodies(workspace_id, [event_id for event_id, _ in rows])
            frontier = merkle.Frontier(audit_log.tree_size, split_hashes(audit_log.frontier))
            chunk_index, offset = divmod(audit_log.tree_size, CHUNK_LEAVES)
            partial = await repository.chunk(workspace_id, chunk_index) if offset else None
            hashes = bytearray(partial.leaf_hashes if partial else b"")
            ids = list(partial.event_ids if partial else [])
            chunks: list[dict[str, Any]] = []
            last = len(rows) - 1
            for at, (event_id, commit_xid) in enumerate(rows):
                leaf = merkle.leaf_hash(export_line_of(bodies[event_id]))
                frontier.append(leaf, keep_from_level=CHUNK_LEVEL)
                hashes += leaf
                ids.append(event_id)
                if len(ids) == CHUNK_LEAVES or at == last:
                    chunks.append({"workspace_id": workspace_id, "chunk_index": chunk_index,
                                   "leaf_hashes": bytes(hashes), "event_ids": ids, "last_xid": commit_xid,
                                   "last_id": event_id})
                    if len(ids) == CHUNK_LEAVES:
                        chunk_index, hashes, ids = chunk_index + 1, bytearray(), []
            upsert = insert(AuditChunk).values(chunks)
            await session.execute(upsert.on_conflict_do_update(
                index_elements=["workspace_id", "chunk_index"],
                set_={name: upsert.excluded[name] for name in ("leaf_hashes", "event_ids", "last_xid", "last_id")}))
            if frontier.completed:
                await session.execute(insert(AuditNode).values([
                    {"workspace_id": workspace_id, "level": level, "index": index, "hash": value}
                    for level, index, value in frontier.completed]).on_conflict_do_nothing())
            audit_log.tree_size = frontier.size
            audit_log.frontier = b"".join(frontier.hashes)
            audit_log.sealed_id, audit_log.sealed_xid = rows[-1]
            audit_log.sealed_at = datetime.now(UTC)
            await self._sign(session, audit_log, frontier.root())
        return len(rows)

    async def _read_bodies(self, workspace_id: uuid.UUID, event_ids: list[str]) -> dict[str, str]:
        """The events' jsonb text, read in READERS parts at once on connections of their own:
        turning jsonb into text is most of a seal's time, and Postgres spreads the parts over
        its cores. (The events are committed: any connection reads them as the seal's does.)"""
        size = -(-len(event_ids) // READERS)

        async def read(part: list[str]) -> dict[str, str]:
            async with self.sessions() as session:
                return await AuditRepository(session).bodies(workspace_id, part)

        found: dict[str, str] = {}
        for part in await asyncio.gather(*(read(event_ids[i:i + size]) for i in range(0, len(event_ids), size))):
            found.update(part)
        if len(found) != len(event_ids):  # deleted since the ids were read (the workspace, say): next time
            raise NotSealed("events went while they were being sealed")
        return found

    # --- reading: heads and proofs -----------------------------------------------------------

    async def tree_head(self, workspace_id: uuid.UUID, tree_size: int | None = None) -> dict[str, Any] | None:
        async with self.sessions() as session, session.begin():
            repository = AuditRepository(session)
            await self._log(repository, workspace_id)
            head = await repository.tree_head(workspace_id, tree_size)
        return head_json(workspace_id, head) if head is not None else None

    async def _size(self, repository: AuditRepository, workspace_id: uuid.UUID, tree_size: int | None) -> int:
        current = (await self._log(repository, workspace_id)).tree_size
        if tree_size is None:
            return current
        if not 0 <= tree_size <= current:
            raise BadTreeSize(f"tree_size must be between 0 and the log's size, {current}")
        return tree_size

    async def _hashes(self, repository: AuditRepository, workspace_id: uuid.UUID,
                      ranges: list[tuple[int, int]]) -> list[bytes]:
        """The hash of each range, from the stored complete subtrees (fetched at once)."""
        subtree = await self._subtrees(repository, workspace_id, merkle.needed(ranges))
        return [merkle.range_hash(a, b, subtree) for a, b in ranges]

    async def _subtrees(self, repository: AuditRepository, workspace_id: uuid.UUID,
                        wanted: set[merkle.Subtree]) -> Callable[[int, int], bytes]:
        """`subtree(level, index)` for the wanted complete subtrees: nodes read at once, and
        the ones below a chunk computed from its leaf hashes."""
        nodes = await repository.nodes(workspace_id, {key for key in wanted if key[0] >= CHUNK_LEVEL})
        chunks = await repository.chunks(workspace_id, sorted({(index << level) >> CHUNK_LEVEL
                                                               for level, index in wanted if level < CHUNK_LEVEL}))

        def subtree(level: int, index: int) -> bytes:
            if level >= CHUNK_LEVEL:
                return nodes[(level, index)]
            first = index << level
            leaves = chunks[first >> CHUNK_LEVEL].leaf_hashes
            start = (first % CHUNK_LEAVES) * HASH_BYTES
            return merkle.root_of(split_hashes(leaves[start:start + (HASH_BYTES << level)]))

        return subtree

    async def removed(self, workspace_id: uuid.UUID, tree_size: int | None) -> tuple[int, list[dict[str, Any]]]:
        """The leaves below `tree_size` whose events retention deleted, as ranges, each with
        the aligned subtrees that stand in for its leaves when a tree is rebuilt from an
        export (`audit verify --removed`)."""
        async with self.sessions() as session, session.begin():
            repository = AuditRepository(session)
            size = await self._size(repository, workspace_id, tree_size)
            ranges = [(r.first_leaf, min(r.last_leaf, size - 1), r.removed_at)
                      for r in await repository.removals(workspace_id, below=size)]
            blocks = {(first, last): merkle.aligned_blocks(first, last + 1) for first, last, _ in ranges}
            subtree = await self._subtrees(repository, workspace_id, {b for bs in blocks.values() for b in bs})
        return size, [{"first_leaf": first, "last_leaf": last, "removed_at": removed_at,
                       "subtrees": [{"level": level, "index": index, "hash": subtree(level, index)}
                                    for level, index in blocks[(first, last)]]}
                      for first, last, removed_at in ranges]

    async def proof(self, workspace_id: uuid.UUID, event_id: str, tree_size: int | None) -> Proof:
        async with self.sessions() as session, session.begin():
            repository = AuditRepository(session)
            size = await self._size(repository, workspace_id, tree_size)
            leaf_index = await repository.leaf_of(workspace_id, event_id)
            if leaf_index is None:
                raise NotSealed("The event is not sealed into the audit log yet (or there is no such event).")
            if leaf_index >= size:
                raise NotSealed(f"The event is leaf {leaf_index}: not in a tree of {size} leaves.")
            path = await self._hashes(repository, workspace_id, merkle.audit_path_ranges(leaf_index, size))
        return Proof(leaf_index, size, path)

    async def consistency(self, workspace_id: uuid.UUID, first: int, second: int) -> list[bytes]:
        async with self.sessions() as session, session.begin():
            repository = AuditRepository(session)
            second = await self._size(repository, workspace_id, second)
            if not 0 <= first <= second:
                raise BadTreeSize("first must be between 0 and second")
            return await self._hashes(repository, workspace_id, merkle.consistency_ranges(first, second))

    async def leaf_events(self, workspace_id: uuid.UUID, tree_size: int, after: int,
                          limit: int) -> list[tuple[int, str, str | None]]:
        """Leaves after `after` (exclusive) and below `tree_size`: (index, event id, stored
        body text or None when the event is gone), in leaf order."""
        async with self.sessions() as session:
            leaves = await self._leaves(AuditRepository(session), workspace_id, after + 1,
                                        min(after + 1 + limit, tree_size))
        return [(index, event_id, body) for index, event_id, _, body in leaves]

    @staticmethod
    async def _leaves(repository: AuditRepository, workspace_id: uuid.UUID, start: int,
                      end: int) -> list[tuple[int, str, bytes, str | None]]:
        """Leaves [start, end): (index, event id, leaf hash, the stored event's jsonb text or
        None when it is gone), in leaf order."""
        if start >= end:
            return []
        first_chunk = start // CHUNK_LEAVES
        chunks = await repository.chunks_from(workspace_id, first_chunk, -(-end // CHUNK_LEAVES) - first_chunk)
        leaves = [(chunk.chunk_index * CHUNK_LEAVES + offset, event_id, leaf)
                  for chunk in chunks
                  for offset, (event_id, leaf) in enumerate(zip(chunk.event_ids, split_hashes(chunk.leaf_hashes),
                                                                strict=True))]
        leaves = [leaf for leaf in leaves if start <= leaf[0] < end]
        bodies = await repository.bodies(workspace_id, [event_id for _, event_id, _ in leaves])
        return [(index, event_id, leaf, bodies.get(event_id)) for index, event_id, leaf in leaves]

    # --- the check -------------------------------------------------------------------------

    async def check(self, workspace_id: uuid.UUID, limit: int) -> CheckReport:
        """Re-hash up to `limit` sealed leaves from where the last check stopped (starting over
        after the last), record what differs, and move on."""
        report = CheckReport()
        async with self.sessions() as session, session.begin():
            repository = AuditRepository(session)
            audit_log = await self._log(repository, workspace_id)  # no lock: sealing goes on meanwhile
            removed = Removed(await repository.removals(workspace_id))
            start = audit_log.checked_leaves if audit_log.checked_leaves < audit_log.tree_size else 0
            end = min(start + limit, audit_log.tree_size)
            for page in range(start, end, CHECK_PAGE):
                leaves = await self._leaves(repository, workspace_id, page, min(page + CHECK_PAGE, end))
                for index, event_id, leaf, body in leaves:
                    if body is None and index in removed:
                        continue  # deleted by retention, as recorded: its hash stays in the tree
                    if body is None:
                        report.found.append((index, event_id, "missing"))
                    elif merkle.leaf_hash(export_line_of(body)) != leaf:
                        report.found.append((index, event_id, "altered"))
                report.checked += len(leaves)
            new = await repository.record_mismatches(workspace_id, report.found)
            audit_log.checked_leaves = end
            audit_log.checked_at = datetime.now(UTC)
            if end >= audit_log.tree_size:
                audit_log.check_passes += 1
        for index, event_id, kind in report.found:
            if index not in new:
                continue  # found by an earlier pass: reported then
            log.warning("audit check: workspace %s, leaf %d (event %s) %s since it was sealed", workspace_id, index,
                        event_id, "was altered" if kind == "altered" else "is missing")
        metrics.count(metrics.AUDIT_MISMATCHES, n=len(new))
        return report

    async def check_all(self, limit: int) -> CheckReport:
        async with self.sessions() as session:
            workspaces = await AuditRepository(session).logs_to_check()
        total = CheckReport()
        for workspace_id in workspaces:
            report = await self.check(workspace_id, limit)
            total.checked += report.checked
            total.found += report.found
        return total
