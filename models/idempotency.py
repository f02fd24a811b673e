"""Idempotency keys of management calls (`Idempotency-Key`, as Stripe's API takes it): the
first answer to a key is kept for 24 h and given again to a repeat of the same request."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import LargeBinary, SmallInteger, String, Text, delete, func, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, rows_affected

KEEP_FOR = timedelta(hours=24)
# A key whose first request never finished (its process died) is free again after this.
ABANDONED_AFTER = timedelta(minutes=1)


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"

    # Whose key: a digest of the caller's credentials (never the credentials themselves).
    caller: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # A digest of method, path and body: the same key with another request is refused.
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int | None] = mapped_column(SmallInteger)  # None while the first request runs
    content_type: Mapped[str | None] = mapped_column(Text)
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


@dataclass(frozen=True)
class KeptAnswer:
    fingerprint: str
    status: int | None  # None: the first request with this key is still running
    content_type: str | None
    body: bytes | None


class IdempotencyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def begin(self, caller: str, key: str, fingerprint: str) -> KeptAnswer | None:
        """Take `key` for a request about to run (None), or return what it holds: the kept
        answer, or one still running. An expired or abandoned key is taken over."""
        table = IdempotencyKey.__table__
        taken = insert(IdempotencyKey).values(caller=caller, key=key, fingerprint=fingerprint).on_conflict_do_update(
            index_elements=[table.c.caller, table.c.key],
            set_={"fingerprint": fingerprint, "status": None, "content_type": None, "body": None,
                  "created_at": func.now()},
            where=(table.c.created_at < func.now() - KEEP_FOR)
            | (table.c.status.is_(None) & (table.c.created_at < func.now() - ABANDONED_AFTER)),
        ).returning(table.c.key)
        if (await self.session.execute(taken)).first() is not None:
            return None
        row = (await self.session.execute(
            text("SELECT fingerprint, status, content_type, body FROM idempotency_keys "
                 "WHERE caller = :caller AND key = :key"), {"caller": caller, "key": key})).one()
        return KeptAnswer(row.fingerprint, row.status, row.content_type, row.body)

    async def keep(self, caller: str, key: str, status: int, content_type: str | None, body: bytes) -> None:
        await self.session.execute(
            text("UPDATE idempotency_keys SET status = :status, content_type = :content_type, body = :body "
                 "WHERE caller = :caller AND key = :key"),
            {"caller": caller, "key": key, "status": status, "content_type": content_type, "body": body})

    async def release(self, caller: str, key: str) -> None:
        """Forget a key whose request failed without an answer worth keeping (a 5xx): a retry runs."""
        await self.session.execute(delete(IdempotencyKey).where(IdempotencyKey.caller == caller,
                                                                IdempotencyKey.key == key))

    async def purge_expired(self) -> int:
        result = await self.session.execute(delete(IdempotencyKey).where(
            IdempotencyKey.created_at < func.now() - KEEP_FOR))
        return rows_affected(result)
