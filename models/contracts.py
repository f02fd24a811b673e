"""Event contracts (schemas enforced at ingestion) and the violations they record.

A contract matches events by `event_type` and `event_name` (the track event, the page or
screen name, the audit action; none for identify and group). A contract without an
`event_name` covers every event of its type that has no contract of its own. At most one
*active* contract per (workspace, event_type, event_name): a partial unique index says so.

Violations are written by the ingest group commit, in the same statement as the events
(`models.events.commit_events`); this module reads them.
"""

from __future__ import annotations

import uuid
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
    delete,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAt, UUIDPrimaryKey
from models.paging import cut_page, encode_seq_cursor

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


class ContractViolation(Base):
    __tablename__ = "contract_violations"
    # The key is the paging order (one contract's violations by seq): a separate primary key
    # on seq alone would cost every violating event one more index entry.
    __table_args__ = (
        PrimaryKeyConstraint("contract_id", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)  # keyset order
    # Random (v4), so unique without an index to keep it so: the group commit writes these
    # rows beside the events, and each index costs every violating event.
    id: Mapped[uuid.UUID] = mapped_column(server_default=text("gen_random_uuid()"))
    # No foreign keys. Not to the workspace, as for events (models.events): deleting one deletes
    # these by trigger (migration 0008). Not to the contract: violations are written by the ingest
    # group commit, which must not fail because a contract was deleted a moment earlier;
    # deleting a contract deletes its own.
    workspace_id: Mapped[uuid.UUID]
    contract_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    event_id: Mapped[str | None] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(16))
    event_name: Mapped[str | None] = mapped_column(String(512))
    source_id: Mapped[uuid.UUID | None]
    path: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(8))
    occurred_at: Mapped[datetime] = mapped_column(server_default=func.now())


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

    async def list(self, workspace_id: uuid.UUID, *, status: str | None, event_type: str | None,
                   event_name: str | None) -> list[EventContract]:
        query = select(EventContract).where(EventContract.workspace_id == workspace_id)
        if status:
            query = query.where(EventContract.status == status)
        if event_type:
            query = query.where(EventContract.event_type == event_type)
        if event_name:
            query = query.where(EventContract.event_name == event_name)
        return list(await self.session.scalars(query.order_by(EventContract.created_at, EventContract.id)))

    async def active(self, workspace_id: uuid.UUID) -> list[EventContract]:
        return list(await self.session.scalars(select(EventContract).where(
            EventContract.workspace_id == workspace_id, EventContract.status == ACTIVE)))

    async def violation_counts(self, contract_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
        if not contract_ids:
            return {}
        rows = await self.session.execute(
            select(ContractViolation.contract_id, func.count()).where(ContractViolation.contract_id.in_(contract_ids))
            .group_by(ContractViolation.contract_id))
        return dict(rows.all())

    async def delete(self, contract: EventContract) -> None:
        await self.session.execute(delete(ContractViolation).where(ContractViolation.contract_id == contract.id))
        await self.session.delete(contract)
        await self.session.flush()

    def _filtered(self, query, contract_id: uuid.UUID, filters: ViolationFilters):
        query = query.where(ContractViolation.contract_id == contract_id)
        if filters.since is not None:
            query = query.where(ContractViolation.occurred_at >= filters.since)
        if filters.kind:
            query = query.where(ContractViolation.kind == filters.kind)
        if filters.path:
            query = query.where(ContractViolation.path == filters.path)
        return query

    async def violations(self, contract_id: uuid.UUID, filters: ViolationFilters, *, limit: int,
                         before_seq: int | None) -> tuple[list[ContractViolation], str | None]:
        query = self._filtered(select(ContractViolation), contract_id, filters)
        if before_seq is not None:
            query = query.where(ContractViolation.seq < before_seq)
        rows = list(await self.session.scalars(query.order_by(ContractViolation.seq.desc()).limit(limit + 1)))
        return cut_page(rows, limit, lambda v: encode_seq_cursor(v.seq))

    async def violation_groups(self, contract_id: uuid.UUID, filters: ViolationFilters,
                               group_by: list[str]) -> list[dict[str, Any]]:
        columns = [getattr(ContractViolation, name) for name in group_by]
        query = self._filtered(select(*columns, func.count().label("count")), contract_id, filters)
        rows = await self.session.execute(query.group_by(*columns).order_by(func.count().desc(), *columns))
        return [{**{name: row[i] for i, name in enumerate(group_by)}, "count": row[-1]} for row in rows.all()]
