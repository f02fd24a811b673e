"""Event contracts (schemas enforced at ingestion) and the violations they record.

A contract matches events by `event_type` and `event_name` (the track event, the page or
screen name, the audit action; none for identify and group). A contract without an
`event_name` covers every event of its type that has no contract of its own. At most one
*active* contract per (workspace, event_type, event_name): a partial unique index says so.

Violations are written by the ingest group commit, in the same statement as the events
(`models.events.commit_events`), in batches (`ContractViolationBatch`); this module reads
them one by one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Identity,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Text,
    column,
    delete,
    func,
    literal,
    select,
    text,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAt, UUIDPrimaryKey
from models.paging import CreatedPlace, cut_page, encode_seq_cursor, page_by_creation
from models.timestamps import iso

ACTIVE, ARCHIVED = "active", "archived"


class EventContract(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "event_contracts"
    __table_args__ = (
        Index("uq_event_contracts_active", "workspace_id", "event_type", text("coalesce(event_name, '')"),
              unique=True, postgresql_where=text("status = 'active'")),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    event_type: Mapped[str] = mapped_column(String(16))
    event_name: Mapped[str | None] = mapped_column(String(512))
    schema_definition: Mapped[dict[str, Any]] = mapped_column(JSONB)  # as given
    json_schema: Mapped[dict[str, Any]] = mapped_column(JSONB)  # what is validated with
    enforcement_mode: Mapped[str] = mapped_column(String(8))
    undeclared_fields: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    version: Mapped[int] = mapped_column(Integer, default=1)  # bumped by every update
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ContractViolationBatch(Base):
    """The violations one group commit recorded for one contract: one row, the violations in
    a JSON array. A row per violation (a heap tuple, an index entry and a WAL record each) cost
    the group commit ~4.5 µs a violation here, a batch ~1.5 µs (and far less disk: compressed);
    reads unnest the arrays (a page of a 600,000-violation contract: ~10 ms)."""

    __tablename__ = "contract_violation_batches"
    # The key is the paging order (one contract's batches by seq).
    __table_args__ = (
        PrimaryKeyConstraint("contract_id", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)  # keyset order
    # No foreign keys. Not to the workspace, as for events (models.events): deleting one deletes
    # these by trigger (migration 0008). Not to the contract: the ingest group commit writes
    # them and must not fail because a contract was deleted a moment earlier; deleting a
    # contract deletes its own.
    contract_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID]
    event_type: Mapped[str] = mapped_column(String(16))  # the contract's: it may change later
    violation_count: Mapped[int] = mapped_column(Integer)
    # [[event_id, event_name, source_id, path, kind, message, action], ...]: VIOLATION_FIELDS
    violations: Mapped[list[list[Any]]] = mapped_column(JSONB)
    occurred_at: Mapped[datetime] = mapped_column(server_default=func.now())


# One violation in a batch, a JSON array in this order (keys would cost bytes on every one).
# `event_id` is null when the event was blocked (not stored). A violation's id is its place,
# `vio_<batch seq>_<n>` (seq is unique across contracts): nothing to draw or store per violation.
VIOLATION_FIELDS = ("event_id", "event_name", "source_id", "path", "kind", "message", "action")
_FIELD = {name: index for index, name in enumerate(VIOLATION_FIELDS)}
MAX_BATCH_VIOLATIONS = 1000  # one row holds at most this many; a larger group gets more rows

ViolationKey = tuple[str, uuid.UUID, str]  # (contract id, workspace id, event type): one batch


class RecordedViolations:
    """Violations on their way to the group commit, by contract (`ViolationKey`), each a
    tuple laid out as VIOLATION_FIELDS."""

    __slots__ = ("_by_key",)

    def __init__(self) -> None:
        self._by_key: dict[ViolationKey, list[tuple[Any, ...]]] = {}

    def add(self, key: ViolationKey, violations: list[tuple[Any, ...]]) -> None:
        found = self._by_key.get(key)
        if found is None:
            self._by_key[key] = list(violations)
        else:
            found.extend(violations)

    @classmethod
    def merged(cls, parts: Iterable[RecordedViolations]) -> RecordedViolations:
        merged = cls()
        for part in parts:
            for key, violations in part._by_key.items():
                merged.add(key, violations)
        return merged

    def __len__(self) -> int:
        return sum(len(violations) for violations in self._by_key.values())

    def batches(self) -> list[tuple[Any, ...]]:
        """[(contract id, workspace id, event type, violations), ...]: the rows to insert."""
        return [(contract_id, workspace_id, event_type, violations[start:start + MAX_BATCH_VIOLATIONS])
                for (contract_id, workspace_id, event_type), violations in self._by_key.items()
                for start in range(0, len(violations), MAX_BATCH_VIOLATIONS)]


@dataclass
class ViolationFilters:
    since: datetime | None = None
    kind: str | None = None
    path: str | None = None


class ContractRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, workspace_id: uuid.UUID, **fields: Any) -> EventContract:
        contract = EventContract(id=uuid.uuid4(), workspace_id=workspace_id, status=ACTIVE, version=1, **fields)
        self.session.add(contract)
        await self.session.flush()
        await self.session.refresh(contract)
        return contract

    async def get(self, workspace_id: uuid.UUID, contract_id: uuid.UUID, *, for_update: bool = False) -> EventContract | None:
        query = select(EventContract).where(EventContract.workspace_id == workspace_id, EventContract.id == contract_id)
        if for_update:
            query = query.with_for_update()
        return await self.session.scalar(query)

    async def page(self, workspace_id: uuid.UUID, limit: int, after: CreatedPlace | None, *, status: str | None,
                   event_type: str | None, event_name: str | None) -> tuple[list[EventContract], str | None]:
        query = select(EventContract).where(EventContract.workspace_id == workspace_id)
        if status:
            query = query.where(EventContract.status == status)
        if event_type:
            query = query.where(EventContract.event_type == event_type)
        if event_name:
            query = query.where(EventContract.event_name == event_name)
        return await page_by_creation(self.session, query, EventContract, limit, after)

    async def active(self, workspace_id: uuid.UUID) -> list[EventContract]:
        return list(await self.session.scalars(select(EventContract).where(
            EventContract.workspace_id == workspace_id, EventContract.status == ACTIVE)))

    async def violation_counts(self, contract_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
        if not contract_ids:
            return {}
        rows = await self.session.execute(
            select(ContractViolationBatch.contract_id, func.sum(ContractViolationBatch.violation_count))
            .where(ContractViolationBatch.contract_id.in_(contract_ids)).group_by(ContractViolationBatch.contract_id))
        return {contract_id: int(total) for contract_id, total in rows.all()}

    async def delete(self, contract: EventContract) -> None:
        await self.session.execute(delete(ContractViolationBatch).where(ContractViolationBatch.contract_id == contract.id))
        await self.session.delete(contract)
        await self.session.flush()

    def _filtered(self, query, item: Any, contract_id: uuid.UUID, filters: ViolationFilters):
        """`query` over the contract's violations, `item` (`_items()`) one row per violation."""
        batch = ContractViolationBatch
        query = query.select_from(batch).join(item, true()).where(batch.contract_id == contract_id)
        if filters.since is not None:
            query = query.where(batch.occurred_at >= filters.since)
        if filters.kind:
            query = query.where(_field(item, "kind") == filters.kind)
        if filters.path:
            query = query.where(_field(item, "path") == filters.path)
        return query

    async def violations(self, contract_id: uuid.UUID, filters: ViolationFilters, *, limit: int,
                         before: tuple[int, int] | None) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first: the page, as the API shows violations, and the cursor after it."""
        batch, item = ContractViolationBatch, _items()
        query = self._filtered(select(batch.seq, item.c.n, batch.contract_id, batch.event_type, batch.occurred_at,
                                      item.c.v), item, contract_id, filters)
        if before is not None:
            # seq <= first: the primary key's range; then the exact place
            query = query.where(batch.seq <= before[0], tuple_(batch.seq, item.c.n) < before)
        rows = (await self.session.execute(query.order_by(batch.seq.desc(), item.c.n.desc()).limit(limit + 1))).all()
        page, next_cursor = cut_page(rows, limit, lambda row: encode_seq_cursor(row.seq, row.n))
        return [{
            "id": f"vio_{row.seq}_{row.n}", **dict(zip(VIOLATION_FIELDS, row.v, strict=True)),
            "contract_id": str(row.contract_id), "event_type": row.event_type, "occurred_at": iso(row.occurred_at),
        } for row in page], next_cursor

    async def violation_groups(self, contract_id: uuid.UUID, filters: ViolationFilters,
                               group_by: list[str]) -> list[dict[str, Any]]:
        item = _items()
        columns = [_field(item, name).label(name) for name in group_by]
        last_seen = func.max(ContractViolationBatch.occurred_at)
        query = self._filtered(select(*columns, func.count().label("count"), last_seen), item, contract_id, filters)
        rows = await self.session.execute(query.group_by(*columns).order_by(func.count().desc(), *columns))
        return [{**{name: row[i] for i, name in enumerate(group_by)}, "count": row[-2], "last_seen": iso(row[-1])}
                for row in rows.all()]


def _items() -> Any:
    """Each violation of a batch as a row: `v` its JSON array, `n` its place (from 1). A
    function in FROM may use the tables before it (LATERAL is implied)."""
    return func.jsonb_array_elements(ContractViolationBatch.violations).table_valued(
        column("v", JSONB), with_ordinality="n").render_derived(name="item")


def _field(item: Any, name: str) -> Any:
    """One field of an unnested violation, as text."""
    return item.c.v.op("->>")(literal(_FIELD[name]))
