"""Workspaces and their master keys.

A master key is `mk_` + 32 random bytes (url-safe base64). Only its SHA-256 and a short
visible prefix are stored; the secret is shown once, when it is created.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, String, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAt, UUIDPrimaryKey
from models.paging import CreatedPlace, page_by_creation

MASTER_KEY_PREFIX = "mk_"
VISIBLE_PREFIX_LENGTH = 11  # "mk_" + 8 characters: enough to tell keys apart in a list
# last_used_at is a hint, not an audit trail: write it at most this often per key.
LAST_USED_RESOLUTION_SECONDS = 60


class Workspace(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "workspaces"

    name: Mapped[str] = mapped_column(String(200))
    # Events older than this many days are deleted (audit/retention.py); None: kept for ever.
    retention_days: Mapped[int | None]


class MasterKey(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "master_keys"

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_master_key_secret() -> str:
    return MASTER_KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class IssuedKey:
    """A freshly created key: the only moment its secret exists outside the caller's hands."""

    key: MasterKey
    secret: str


class WorkspaceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, name: str) -> Workspace:
        workspace = Workspace(id=uuid.uuid4(), name=name)
        self.session.add(workspace)
        await self.session.flush()
        await self.session.refresh(workspace)
        return workspace

    async def get(self, workspace_id: uuid.UUID) -> Workspace | None:
        return await self.session.get(Workspace, workspace_id)

    async def find_by_name(self, name: str) -> Workspace | None:
        result = await self.session.scalars(
            select(Workspace).where(Workspace.name == name).order_by(Workspace.created_at).limit(1)
        )
        return result.first()

    async def list(self) -> list[Workspace]:
        return list(await self.session.scalars(select(Workspace).order_by(Workspace.created_at)))


class MasterKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def issue(self, workspace_id: uuid.UUID, name: str = "default") -> IssuedKey:
        secret = new_master_key_secret()
        key = MasterKey(
            id=uuid.uuid4(),
            workspace_id=workspace_id,
            name=name,
            prefix=secret[:VISIBLE_PREFIX_LENGTH],
            key_hash=hash_key(secret),
        )
        self.session.add(key)
        await self.session.flush()
        await self.session.refresh(key)
        return IssuedKey(key=key, secret=secret)

    async def authenticate(self, secret: str) -> MasterKey | None:
        """The live key behind `secret`, or None if it is unknown or revoked."""
        key = (
            await self.session.scalars(
                select(MasterKey).where(MasterKey.key_hash == hash_key(secret), MasterKey.revoked_at.is_(None))
            )
        ).first()
        if key is not None:
            stale = func.now() - timedelta(seconds=LAST_USED_RESOLUTION_SECONDS)
            await self.session.execute(
                update(MasterKey)
                .where(MasterKey.id == key.id)
                .where((MasterKey.last_used_at.is_(None)) | (MasterKey.last_used_at < stale))
                .values(last_used_at=func.now())
            )
        return key

    async def page(self, workspace_id: uuid.UUID, limit: int,
                   after: CreatedPlace | None) -> tuple[list[MasterKey], str | None]:
        return await page_by_creation(self.session, select(MasterKey).where(MasterKey.workspace_id == workspace_id),
                                      MasterKey, limit, after)

    async def list(self, workspace_id: uuid.UUID) -> list[MasterKey]:
        return list(
            await self.session.scalars(
                select(MasterKey).where(MasterKey.workspace_id == workspace_id).order_by(MasterKey.created_at)
            )
        )

    async def get(self, workspace_id: uuid.UUID, key_id: uuid.UUID) -> MasterKey | None:
        key = await self.session.get(MasterKey, key_id)
        return key if key is not None and key.workspace_id == workspace_id else None

    async def revoke(self, workspace_id: uuid.UUID, key_id: uuid.UUID) -> MasterKey | None:
        key = await self.get(workspace_id, key_id)
        if key is None:
            return None
        if key.revoked_at is None:
            await self.session.execute(
                update(MasterKey).where(MasterKey.id == key_id).values(revoked_at=func.now())
            )
            await self.session.refresh(key)
        return key
