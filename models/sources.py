"""Event sources: the write keys that authenticate source-keyed ingestion (`/v1/*`).

A write key is a public identifier, Segment-style: it ships inside client SDKs, so it is
stored and returned in plain text. Revoking a source is what stops a leaked key.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAt, UUIDPrimaryKey
from models.paging import CreatedPlace, page_by_creation

ACTIVE, REVOKED = "active", "revoked"
WRITE_KEY_PREFIX = "wk_"


class Redaction(StrEnum):
    """What a source's events have redacted on arrival (activities.redaction)."""

    AUDIT = "audit"  # audit events' free text (as the anonymous streams do): the default
    ALL = "all"  # and every event's properties, traits and context
    OFF = "off"


def new_write_key() -> str:
    return WRITE_KEY_PREFIX + secrets.token_urlsafe(24)


class EventSource(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "event_sources"

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    redact: Mapped[str] = mapped_column(String(8), default=Redaction.AUDIT, server_default=Redaction.AUDIT.value)
    created_by: Mapped[uuid.UUID | None]
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    last_used_at: Mapped[datetime | None]


class SourceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, workspace_id: uuid.UUID, name: str, created_by: uuid.UUID | None,
                     redact: Redaction = Redaction.AUDIT) -> EventSource:
        source = EventSource(id=uuid.uuid4(), workspace_id=workspace_id, name=name, key=new_write_key(),
                             status=ACTIVE, redact=redact, created_by=created_by)
        self.session.add(source)
        await self.session.flush()
        await self.session.refresh(source)
        return source

    async def page(self, workspace_id: uuid.UUID, limit: int, after: CreatedPlace | None) -> tuple[list[EventSource], str | None]:
        return await page_by_creation(self.session, select(EventSource).where(EventSource.workspace_id == workspace_id),
                                      EventSource, limit, after)

    async def get(self, workspace_id: uuid.UUID, source_id: uuid.UUID) -> EventSource | None:
        source = await self.session.get(EventSource, source_id)
        return source if source is not None and source.workspace_id == workspace_id else None

    async def by_key(self, key: str) -> EventSource | None:
        return (await self.session.scalars(select(EventSource).where(EventSource.key == key))).first()

    async def update(self, workspace_id: uuid.UUID, source_id: uuid.UUID, changes: dict) -> EventSource | None:
        source = await self.get(workspace_id, source_id)
        if source is not None and changes:
            await self.session.execute(update(EventSource).where(EventSource.id == source_id)
                                       .values(**changes, updated_at=func.now()))
            await self.session.refresh(source)
        return source

    async def revoke(self, workspace_id: uuid.UUID, source_id: uuid.UUID) -> EventSource | None:
        source = await self.get(workspace_id, source_id)
        if source is not None and source.status != REVOKED:
            await self.session.execute(update(EventSource).where(EventSource.id == source_id)
                                       .values(status=REVOKED, updated_at=func.now()))
            await self.session.refresh(source)
        return source
