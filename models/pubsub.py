"""The commit announcements: every statement that stores events NOTIFYs their ids on the
workspace's topic (`models.volume.count_and_announce`), and `CommitListener` hears them.

The live stream (one listener per API process) and forwarding's waker (one per worker) both
follow workspaces this way.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg

TOPIC_PREFIX = "hw_events_"


def pubsub_topic(workspace_id: uuid.UUID) -> str:
    """The Postgres NOTIFY channel on which every committed group of this workspace's events
    is announced at commit: `{"count", "last_id", "ids"}`, at most 200 ids per notification."""
    return f"{TOPIC_PREFIX}{workspace_id.hex}"


def pubsub_topic_sql(workspace_id_sql: str) -> str:
    """`pubsub_topic` as an SQL expression of a uuid column, for statements that NOTIFY
    (tests/test_observe.py checks that the two agree)."""
    return f"'{TOPIC_PREFIX}' || replace(({workspace_id_sql})::text, '-', '')"


def workspace_of_topic(channel: str) -> uuid.UUID:
    return uuid.UUID(channel.removeprefix(TOPIC_PREFIX))


class CommitListener:
    """One Postgres connection LISTENing on the topics of the workspaces asked for; each
    notification goes to `on_commit(workspace_id, payload)`. The connection opens on first use
    and again after it is lost, listening again on every topic (`on_reconnect` is told: commits
    may have gone unheard meanwhile). Operations on the connection run one at a time, queries
    (`fetch`) included: asyncpg refuses a LISTEN while a query runs."""

    def __init__(self, dsn: str, on_commit: Callable[[uuid.UUID, str], None],
                 on_reconnect: Callable[[], None] | None = None) -> None:
        self.dsn, self.on_commit, self.on_reconnect = dsn, on_commit, on_reconnect
        self.workspaces: set[uuid.UUID] = set()
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()

    async def listen(self, workspace_id: uuid.UUID) -> None:
        async with self._lock:
            conn = await self._connection()
            if workspace_id not in self.workspaces:
                await conn.add_listener(pubsub_topic(workspace_id), self._heard)
                self.workspaces.add(workspace_id)

    async def unlisten(self, workspace_id: uuid.UUID) -> None:
        async with self._lock:
            self.workspaces.discard(workspace_id)
            if self._conn is not None and not self._conn.is_closed():
                try:
                    await self._conn.remove_listener(pubsub_topic(workspace_id), self._heard)
                except (asyncpg.PostgresError, OSError):
                    pass  # a lost connection listens to nothing

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self._lock:
            return await (await self._connection()).fetch(query, *args)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            reconnecting = self._conn is not None
            self._conn = await asyncpg.connect(self.dsn)
            for workspace_id in self.workspaces:
                await self._conn.add_listener(pubsub_topic(workspace_id), self._heard)
            if reconnecting and self.on_reconnect is not None:
                self.on_reconnect()
        return self._conn

    def _heard(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        self.on_commit(workspace_of_topic(channel), payload)
