"""Write key → event source, remembered per process, so that the ingest hot path does not
query Postgres per request."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ingest.cache import RefreshingCache
from models.sources import Redaction, SourceRepository

KEY_CACHE_SECONDS = 1.0  # a revoked key stops working on every process within this (+ a query)


@dataclass(frozen=True)
class Source:
    id: uuid.UUID
    workspace_id: uuid.UUID
    status: str
    redact: Redaction = Redaction.AUDIT


class WriteKeyCache:
    """Write key → source, remembered for a second per process (misses too), so the hot
    path does not query Postgres per request and a revocation still lands within 2 s."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self._cache: RefreshingCache[Source | None] = RefreshingCache(KEY_CACHE_SECONDS)

    async def lookup(self, key: str) -> Source | None:
        async def load() -> Source | None:
            async with self.sessions() as session:
                row = await SourceRepository(session).by_key(key)
            return Source(row.id, row.workspace_id, row.status, Redaction(row.redact)) if row is not None else None

        return await self._cache.get(key, load)
