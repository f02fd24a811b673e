"""Fixed-window rate-limit counters kept in Postgres, so every API process sees the same counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Integer, String, delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, rows_affected
from models.timestamps import utcnow


class RateLimitCounter(Base):
    __tablename__ = "rate_limit_counters"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(primary_key=True)
    count: Mapped[int] = mapped_column(Integer)


@dataclass(frozen=True)
class Quota:
    """Where a caller stands against one limit, as the RateLimit-* headers report it."""

    limit: int
    remaining: int
    reset_after: int  # seconds until the window resets


class LimitExceeded(Exception):
    def __init__(self, code: str, message: str, quota: Quota, fits: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.quota = quota
        self.fits = fits  # how many more would have been accepted


_CONSUME = text(
    """
    INSERT INTO rate_limit_counters AS c (key, window_start, count)
    VALUES (:key, :window_start, :amount)
    ON CONFLICT (key, window_start)
    DO UPDATE SET count = c.count + :amount WHERE c.count + :amount <= :limit
    RETURNING count
    """
)


def window_bounds(now: datetime, window: timedelta) -> tuple[datetime, int]:
    seconds = int(window.total_seconds())
    epoch = int(now.timestamp())
    start = epoch - epoch % seconds
    return datetime.fromtimestamp(start, now.tzinfo), start + seconds - epoch


async def consume(
    session: AsyncSession, *, key: str, window: timedelta, limit: int, amount: int = 1, code: str, what: str
) -> Quota:
    """Take `amount` from the window's allowance, all or nothing. Raises LimitExceeded."""
    window_start, reset_after = window_bounds(utcnow(), window)
    if amount <= limit:
        count = (
            await session.execute(
                _CONSUME, {"key": key, "window_start": window_start, "amount": amount, "limit": limit}
            )
        ).scalar()
        if count is not None:
            return Quota(limit=limit, remaining=limit - count, reset_after=reset_after)
    used = (
        await session.scalar(
            select(RateLimitCounter.count).where(
                RateLimitCounter.key == key, RateLimitCounter.window_start == window_start
            )
        )
    ) or 0
    fits = max(limit - used, 0)
    raise LimitExceeded(
        code,
        f"{what}: limit is {limit}, {fits} more would fit in this window",
        Quota(limit=limit, remaining=fits, reset_after=reset_after),
        fits,
    )


async def prune(session: AsyncSession, older_than: timedelta) -> int:
    result = await session.execute(
        delete(RateLimitCounter).where(RateLimitCounter.window_start < utcnow() - older_than)
    )
    return rows_affected(result)
