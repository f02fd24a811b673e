"""What a benchmark needs around it: a Postgres (embedded in a temp dir, or DATABASE_URL),
migrated, with a workspace and a source; and server processes it can start and measure."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import text

from bench.stamps import STAMP
from devstack.migrate import upgrade
from devstack.postgres import EmbeddedPostgres, ensure_database
from devstack.processes import child_preexec, free_port, stop_process, wait_for_port
from models.contract_checks import compile_schema
from models.contracts import ContractRepository
from models.db import create_engine, session_factory
from models.sources import SourceRepository
from models.workspaces import WorkspaceRepository
from settings import Settings


@dataclass
class BenchStack:
    database_url: str
    workspace_id: uuid.UUID
    write_key: str
    tmp: Path

    def add_contract(self, **fields: Any) -> uuid.UUID:
        """Create an active contract directly in the database (API processes pick it up within 1 s)."""
        async def create() -> uuid.UUID:
            engine = create_engine(Settings(database_url=self.database_url), pool_size=1)
            async with session_factory(engine)() as session, session.begin():
                contract = await ContractRepository(session).create(
                    self.workspace_id, json_schema=compile_schema(fields["schema_definition"]), **fields)
            await engine.dispose()
            return contract.id

        return asyncio.run(create())

    def set_contract_status(self, contract_id: uuid.UUID, status: str) -> None:
        """Archive or reactivate a contract (API processes see it within 1 s)."""
        async def update() -> None:
            engine = create_engine(Settings(database_url=self.database_url), pool_size=1)
            async with engine.begin() as connection:
                await connection.execute(text("UPDATE event_contracts SET status = :status, version = version + 1 "
                                              "WHERE id = :id"), {"status": status, "id": contract_id})
            await engine.dispose()

        asyncio.run(update())


@dataclass
class Tenant:
    """A workspace of its own, with a master key and an event source."""
    workspace_id: uuid.UUID
    master_key: str
    write_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.master_key}"}


async def new_tenant(database_url: str, name: str = "bench") -> Tenant:
    from models.workspaces import MasterKeyRepository

    engine = create_engine(Settings(database_url=database_url), pool_size=1)
    async with session_factory(engine)() as session, session.begin():
        workspace = await WorkspaceRepository(session).create(name)
        issued = await MasterKeyRepository(session).issue(workspace.id, "bench")
        source = await SourceRepository(session).create(workspace.id, "bench", None)
    await engine.dispose()
    return Tenant(workspace.id, issued.secret, source.key)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")


async def ingest_at_rate(base: str, write_key: str, rate: int, seconds: float, batch_size: int = 10) -> int:
    """`rate` events/s for `seconds`, as /v1/batch requests of `batch_size` sent on a fixed
    schedule (open loop), each event stamped with its send time (`properties.sent_ns`)."""
    import httpx

    sent = 0
    interval = batch_size / rate
    async with httpx.AsyncClient(base_url=base, headers={"X-Write-Key": write_key}, timeout=30,
                                 limits=httpx.Limits(max_connections=64)) as http:
        started = time.perf_counter()
        tick = 0
        pending: set[asyncio.Task] = set()
        while (now := time.perf_counter()) - started < seconds:
            due = started + tick * interval
            if due > now:
                await asyncio.sleep(due - now)
            batch = [{"type": "track", "event": "bench", "userId": "u", "properties": {STAMP: time.time_ns()}}
                     for _ in range(batch_size)]
            task = asyncio.create_task(http.post("/v1/batch", json={"batch": batch}))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += batch_size
            tick += 1
        for response in await asyncio.gather(*pending):
            assert response.status_code == 200, response.text
    return sent


@contextmanager
def bench_stack() -> Iterator[BenchStack]:
    with tempfile.TemporaryDirectory(prefix="headwater-bench-") as tmp:
        configured = Settings().database_url
        server = None
        if configured:
            url = configured
        else:
            server = EmbeddedPostgres(Path(tmp) / "pg", free_port())
            server.start()
            asyncio.run(ensure_database(server.url(), "bench"))
            url = server.url("bench")
        try:
            upgrade(url)
            tenant = asyncio.run(new_tenant(url))
            yield BenchStack(database_url=url, workspace_id=tenant.workspace_id, write_key=tenant.write_key,
                             tmp=Path(tmp))
        finally:
            if server is not None:
                server.stop()


@contextmanager
def serve(args: list[str], port: int, env: dict[str, str]) -> Iterator[psutil.Process]:
    """Run a server process; yields it (for RSS) once it listens."""
    full_env = {**os.environ, **env}
    with open(os.devnull, "wb") as devnull:
        process = subprocess.Popen([sys.executable, *args], env=full_env, stdout=devnull, stderr=devnull,
                                   preexec_fn=child_preexec)
    try:
        wait_for_port("127.0.0.1", port, 60, process, what=" ".join(args))
        yield psutil.Process(process.pid)
    finally:
        stop_process(process)


def load(url: str, body: bytes, tmp: Path, *, headers: list[str] = (), connections: int = 64,
         seconds: float = 10, rate: float | None = None) -> dict:
    """Run the load generator in its own process; returns its JSON result."""
    body_file = tmp / f"body-{len(body)}.json"
    body_file.write_bytes(body)
    args = [sys.executable, "-m", "bench.loadgen", url, "--body", str(body_file), "--connections", str(connections),
            "--seconds", str(seconds)]
    for header in headers:
        args += ["--header", header]
    if rate:
        args += ["--rate", str(rate)]
    out = subprocess.run(args, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])
