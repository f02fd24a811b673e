"""Engine and session factory. One engine per process, created at start-up and kept on the app
or the worker."""

from __future__ import annotations

import orjson
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from settings import Settings


def create_engine(settings: Settings, *, pool_size: int | None = None) -> AsyncEngine:
    return create_async_engine(
        settings.sqlalchemy_url,
        pool_size=pool_size or settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        # orjson reads an integer too long for 64 bits as a double where Python's json reads a
        # big int that no response can then serialise: one such stored value (from before the
        # door refused them, or a large double that jsonb writes out in full) must not break reads.
        json_deserializer=orjson.loads,
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: objects stay readable after the handler commits.
    return async_sessionmaker(engine, expire_on_commit=False)
