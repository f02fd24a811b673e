"""Event transformations (user JavaScript run on the way to destinations) and their versions.

Every update is a new `version`, and each version's code is kept in
`event_transformation_versions`, so a batch that started with version N finishes with it even
if the transformation changes meanwhile. Run-time failures are counted per version: enough
consecutive failures of the current version turn the transformation's status to `error`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, and_, case, func, literal, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAt, UUIDPrimaryKey
from models.paging import CreatedPlace, page_by_creation

DRAFT, ACTIVE, ERROR = "draft", "active", "error"


class EventTransformation(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "event_transformations"

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    source_code: Mapped[str] = mapped_column(Text)
    # JSONB null and SQL NULL differ; None here means "not given" (SQL NULL).
    test_input: Mapped[Any | None] = mapped_column(JSONB(none_as_null=True))
    test_output: Mapped[Any | None] = mapped_column(JSONB(none_as_null=True))
    status: Mapped[str] = mapped_column(String(8), default=DRAFT)
    version: Mapped[int] = mapped_column(Integer, default=1)
    last_error: Mapped[str | None] = mapped_column(Text)
    error_count: Mapped[int] = mapped_column(Integer, default=0)  # run-time failures, all versions
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)  # of the current version
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class TransformationVersion(Base):
    __tablename__ = "event_transformation_versions"

    transformation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("event_transformations.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_code: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


@dataclass(frozen=True)
class TransformationSnapshot:
    """What a batch runs: one version's code, fixed for the whole batch."""
    transformation_id: uuid.UUID
    version: int
    source_code: str
    status: str

    @property
    def key(self) -> tuple[str, int]:
        return str(self.transformation_id), self.version


@dataclass(frozen=True)
class RunTally:
    """A batch's run-time outcome for one version: failures in all, failures since the
    last success (all of them if none succeeded), and the last error message."""
    failures: int
    trailing_failures: int
    succeeded_any: bool
    last_error: str | None


class TransformationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, workspace_id: uuid.UUID, **fields: Any) -> EventTransformation:
        transformation = EventTransformation(id=uuid.uuid4(), workspace_id=workspace_id, version=1, error_count=0,
                                             consecutive_failures=0, **{"status": DRAFT, **fields})
        self.session.add(transformation)
        await self.session.flush()
        self.session.add(TransformationVersion(transformation_id=transformation.id, version=1,
                                               source_code=transformation.source_code))
        await self.session.flush()
        await self.session.refresh(transformation)
        return transformation

    async def get(self, workspace_id: uuid.UUID, transformation_id: uuid.UUID, *,
                  for_update: bool = False) -> EventTransformation | None:
        query = select(EventTransformation).where(EventTransformation.workspace_id == workspace_id,
                                                  EventTransformation.id == transformation_id)
        if for_update:
            query = query.with_for_update()
        return await self.session.scalar(query)

    async def page(self, workspace_id: uuid.UUID, limit: int,
                   after: CreatedPlace | None) -> tuple[list[EventTransformation], str | None]:
        query = select(EventTransformation).where(EventTransformation.workspace_id == workspace_id)
        return await page_by_creation(self.session, query, EventTransformation, limit, after)

    async def new_version(self, transformation: EventTransformation) -> None:
        """Record the transformation's current code as its next version (call after changing it)."""
        transformation.version += 1
        transformation.consecutive_failures = 0
        transformation.updated_at = func.now()
        self.session.add(TransformationVersion(transformation_id=transformation.id, version=transformation.version,
                                               source_code=transformation.source_code))
        await self.session.flush()
        await self.session.refresh(transformation)

    async def versions(self, transformation_id: uuid.UUID) -> list[TransformationVersion]:
        """Every version's code, newest first."""
        return list(await self.session.scalars(
            select(TransformationVersion).where(TransformationVersion.transformation_id == transformation_id)
            .order_by(TransformationVersion.version.desc())))

    async def delete(self, transformation: EventTransformation) -> None:
        await self.session.delete(transformation)
        await self.session.flush()

    async def snapshot(self, transformation_id: uuid.UUID, version: int | None = None) -> TransformationSnapshot | None:
        """The current version (or the given one) of a transformation, for a batch to run."""
        query = (select(EventTransformation.status, TransformationVersion.version, TransformationVersion.source_code)
                 .join(TransformationVersion, TransformationVersion.transformation_id == EventTransformation.id)
                 .where(EventTransformation.id == transformation_id))
        query = query.where(TransformationVersion.version == (version if version is not None
                                                              else EventTransformation.version))
        row = (await self.session.execute(query)).first()
        return None if row is None else TransformationSnapshot(transformation_id, row.version, row.source_code, row.status)

    async def record_runs(self, snapshot: TransformationSnapshot, tally: RunTally, error_threshold: int) -> None:
        """Count a batch's run-time failures. Only failures of the current version move the
        consecutive count (a fixed version starts from zero); reaching `error_threshold` sets
        status `error` with `last_error`."""
        if tally.failures == 0 and not tally.succeeded_any:
            return
        t = EventTransformation
        current = t.version == snapshot.version
        consecutive = (literal(tally.trailing_failures) if tally.succeeded_any
                       else t.consecutive_failures + tally.trailing_failures)
        failing = and_(current, consecutive >= error_threshold)
        await self.session.execute(
            update(t).where(t.id == snapshot.transformation_id).values(
                error_count=t.error_count + tally.failures,
                consecutive_failures=case((current, consecutive), else_=t.consecutive_failures),
                last_error=func.coalesce(tally.last_error, t.last_error),
                status=case((failing, ERROR), else_=t.status),
                updated_at=case((and_(failing, t.status != ERROR), func.now()), else_=t.updated_at),
            ).execution_options(synchronize_session=False))
