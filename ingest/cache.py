"""A per-process cache of values that may change in Postgres: each value is remembered for a
short time, and concurrent requests for a value that needs (re)loading share one load.
This is how a change made through one API process (a revoked write key, an updated
contract) reaches every other process within a bounded time without a query per request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class RefreshingCache(Generic[V]):
    def __init__(self, ttl_seconds: float, max_entries: int = 100_000) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[Hashable, tuple[float, V]] = {}
        self._loading: dict[Hashable, asyncio.Future[V]] = {}

    async def get(self, key: Hashable, load: Callable[[], Awaitable[V]]) -> V:
        hit = self._entries.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        loading = self._loading.get(key)
        if loading is None:
            loading = self._loading[key] = asyncio.ensure_future(self._load(key, load))
            loading.add_done_callback(lambda _: self._loading.pop(key, None))
        return await asyncio.shield(loading)

    def forget(self, key: Hashable) -> None:
        """Drop a value this process knows has changed (other processes wait out the ttl)."""
        self._entries.pop(key, None)

    async def _load(self, key: Hashable, load: Callable[[], Awaitable[V]]) -> V:
        loaded_at = time.monotonic()
        value = await load()
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (loaded_at, value)
        return value
