"""What a request handler needs from the process: settings, the database, Temporal.
Created in `before_serving`, kept on the app, reached with `services()`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from quart import current_app
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError

from activities.sandbox_process import SandboxProcess
from ingest.contracts import ContractBook
from ingest.group_commit import GroupCommitter
from ingest.write_keys import WriteKeyCache
from settings import Settings
from web.live_hub import LiveHub

log = logging.getLogger("headwater.web")

T = TypeVar("T")

# A management call that starts, signals or stops a workflow waits at most this long for
# Temporal (connecting included), so that it answers within 2 s whatever Temporal does: down,
# refusing, or frozen with its port open.
CONTROL_BUDGET_SECONDS = 1.5


class TemporalUnavailable(Exception):
    pass


@dataclass
class TemporalGateway:
    """A Temporal client that connects on first use, so the API starts (and ingests) while
    Temporal is down, and reconnects when it comes back."""

    settings: Settings
    _client: Client | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def client(self, timeout: float = 5.0) -> Client:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await asyncio.wait_for(
                        Client.connect(self.settings.temporal_target, namespace=self.settings.temporal_namespace),
                        timeout,
                    )
                except Exception as exc:  # any failure to connect means "unavailable" to callers
                    raise TemporalUnavailable(str(exc) or type(exc).__name__) from exc
        return self._client

    async def run(self, call: Callable[[Client], Awaitable[T]], budget: float = CONTROL_BUDGET_SECONDS) -> T:
        """`call(client)` done within `budget` seconds, or TemporalUnavailable."""
        try:
            async with asyncio.timeout(budget):
                return await call(await self.client(budget))
        except (TimeoutError, RPCError) as exc:
            raise TemporalUnavailable(str(exc) or type(exc).__name__) from exc

    async def healthy(self, timeout: float = 2.0) -> bool:
        try:
            client = await self.client(timeout)
            return await asyncio.wait_for(client.service_client.check_health(), timeout)
        except Exception:  # noqa: BLE001 — whatever the reason, Temporal is not healthy
            return False


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    temporal: TemporalGateway
    committer: GroupCommitter
    write_keys: WriteKeyCache
    contracts: ContractBook
    sandbox: SandboxProcess  # runs transformations' JavaScript (started on first use)
    live: LiveHub  # the live event stream's LISTEN connection (opened on first use)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed on success, rolled back on any exception."""
        async with self.sessions() as session, session.begin():
            yield session


def services() -> Services:
    return current_app.extensions["headwater"]
