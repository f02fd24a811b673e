"""Console sessions: signing in with a master key makes one. The browser holds a random
secret in an HttpOnly cookie; the table holds only its SHA-256, the master key's id (never
the key), a CSRF token and an expiry. A session is live while its key is: revoking the key
ends every session made with it, at the next request."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, String, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAt, rows_affected
from models.workspaces import MasterKey


class ConsoleSession(CreatedAt, Base):
    __tablename__ = "console_sessions"

    secret_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    master_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("master_keys.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class SignedIn:
    key: MasterKey
    csrf_token: str


class ConsoleSessionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def start(self, key: MasterKey, lifetime: timedelta) -> tuple[str, str]:
        """A new session for `key`: (the cookie's secret, the CSRF token)."""
        await self.purge_expired()  # housekeeping where sessions are made: the table stays small
        secret, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self.session.add(ConsoleSession(secret_hash=_hash(secret), master_key_id=key.id, csrf_token=csrf,
                                        expires_at=func.now() + lifetime))
        await self.session.flush()
        return secret, csrf

    async def find(self, secret: str) -> SignedIn | None:
        """The live session behind a cookie: unexpired, its master key not revoked."""
        row = (await self.session.execute(
            select(MasterKey, ConsoleSession.csrf_token)
            .join(ConsoleSession, ConsoleSession.master_key_id == MasterKey.id)
            .where(ConsoleSession.secret_hash == _hash(secret), ConsoleSession.expires_at > func.now(),
                   MasterKey.revoked_at.is_(None))
        )).first()
        return None if row is None else SignedIn(key=row[0], csrf_token=row[1])

    async def end(self, secret: str) -> None:
        await self.session.execute(delete(ConsoleSession).where(ConsoleSession.secret_hash == _hash(secret)))

    async def purge_expired(self) -> int:
        result = await self.session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= func.now()))
        return rows_affected(result)
