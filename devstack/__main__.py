"""`python -m devstack run`: what `make run` runs.

Checks that its ports are free, starts embedded Postgres (unless DATABASE_URL is set),
applies migrations, starts the Temporal dev server with its UI (unless TEMPORAL_ADDRESS is
set), creates the `default` workspace on first run, then runs the worker and the API until
SIGINT or SIGTERM, and stops every child it started, in reverse order. A child that dies is
started again after a backoff; one that dies `CRASH_LIMIT` times in a minute stops it all.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cli import ensure_default_workspace
from devstack.migrate import upgrade
from devstack.processes import child_preexec, stop_process, wait_for_port
from devstack.temporal import start_dev_server
from settings import Settings, get_settings
from telemetry import logs

if TYPE_CHECKING:  # imported when needed: the embedded server is an optional extra
    from devstack.postgres import EmbeddedPostgres

log = logging.getLogger("headwater.devstack")

CRASH_LIMIT = 5  # deaths of one child within CRASH_WINDOW_SECONDS that stop everything
CRASH_WINDOW_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 10.0


class PortInUse(Exception):
    pass


@dataclass
class Child:
    """A process the supervisor keeps running: how to start it, and when it last died."""

    name: str
    start: Callable[[], subprocess.Popen]
    process: subprocess.Popen
    deaths: deque[float] = field(default_factory=deque)
    restart_at: float | None = None

    def backoff(self) -> float:
        return min(0.5 * 2 ** (len(self.deaths) - 1), MAX_BACKOFF_SECONDS)


def port_taken(host: str, port: int) -> bool:
    with socket.socket() as sock:
        # As the servers themselves bind: a port left in TIME_WAIT by a stopped server is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self.postgres: EmbeddedPostgres | None = None
        self.children: list[Child] = []
        self.stopping = False

    def check_ports(self) -> None:
        """Before anything starts: each port this run would take must be free, or say which
        variable moves it."""
        settings = self.settings
        wanted = [(settings.host, settings.port, "the API", "HEADWATER_PORT")]
        if not settings.database_url:
            wanted.append(("127.0.0.1", settings.pg_port, "embedded Postgres", "HEADWATER_PG_PORT"))
        if not settings.temporal_address:
            wanted += [("127.0.0.1", settings.temporal_port, "the Temporal dev server", "HEADWATER_TEMPORAL_PORT"),
                       ("127.0.0.1", settings.temporal_ui_port, "the Temporal UI", "HEADWATER_TEMPORAL_UI_PORT")]
        for host, port, what, variable in wanted:
            if port_taken(host, port):
                raise PortInUse(f"port {port} ({what}) is already in use: stop what holds it, or move "
                                f"{what} with {variable}=<another port>")

    def child_env(self, database_url: str, temporal_address: str) -> dict[str, str]:
        env = dict(os.environ)
        env["DATABASE_URL"] = database_url
        env["TEMPORAL_ADDRESS"] = temporal_address
        env.setdefault("HEADWATER_ALLOW_PRIVATE_DESTINATIONS", "true")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        def start() -> subprocess.Popen:
            return subprocess.Popen(args, env=env, preexec_fn=child_preexec, start_new_session=True)

        process = start()
        self.children.append(Child(name, start, process))
        return process

    def start(self) -> None:
        settings = self.settings
        self.check_ports()
        self.data_dir.mkdir(parents=True, exist_ok=True)

        database_url = settings.database_url
        if not database_url:
            from devstack.postgres import EmbeddedPostgres, ensure_database

            self.postgres = EmbeddedPostgres(self.data_dir / "postgres", settings.pg_port)
            log.info("starting embedded Postgres on 127.0.0.1:%d (data in %s)", settings.pg_port,
                     self.data_dir / "postgres")
            self.postgres.start()
            asyncio.run(ensure_database(self.postgres.url(), "headwater"))
            database_url = settings.local_database_url
        else:
            log.info("using Postgres at DATABASE_URL")
        log.info("applying migrations")
        upgrade(database_url)

        temporal_address = settings.temporal_address
        if not temporal_address:
            log.info("starting Temporal dev server on 127.0.0.1:%d, UI on http://127.0.0.1:%d",
                     settings.temporal_port, settings.temporal_ui_port)
            temporal_log = self.data_dir / "temporal.log"

            def start_temporal() -> subprocess.Popen:
                try:
                    return start_dev_server(self.data_dir / "temporal.db", settings.temporal_port,
                                            settings.temporal_ui_port, temporal_log)
                except RuntimeError as exc:
                    raise RuntimeError(f"{exc}; the last lines of {temporal_log}:\n{log_tail(temporal_log)}") from None

            self.children.append(Child("temporal", start_temporal, start_temporal()))
            temporal_address = f"127.0.0.1:{settings.temporal_port}"
        else:
            log.info("using Temporal at %s", temporal_address)

        local = settings.model_copy(update={"database_url": database_url, "temporal_address": temporal_address})
        workspace, secret = asyncio.run(ensure_default_workspace(local))
        if secret:
            print(
                "\n  First run: created workspace 'default'\n"
                f"    workspace id: {workspace.id}\n"
                f"    master key:   {secret}\n"
                "  Store the key now; it is not shown again.\n"
                f"  Try: curl -H 'Authorization: Bearer {secret}' "
                f"http://{settings.host}:{settings.port}/api/v1/workspaces/{workspace.id}\n",
                flush=True,
            )
        else:
            print(f"\n  Workspace 'default': {workspace.id} (master key was shown on the first run)\n", flush=True)

        env = self.child_env(database_url, temporal_address)
        self.spawn("worker", [sys.executable, "-m", "worker"], env)
        api = self.spawn("api", [sys.executable, "-m", "web"], env)
        wait_for_port(settings.host, settings.port, 60, api, what="API")
        log.info("Headwater is up: API http://%s:%d  Temporal UI %s", settings.host, settings.port,
                 f"http://127.0.0.1:{settings.temporal_ui_port}" if not settings.temporal_address else "(external)")
        print(f"\n  Console: http://{settings.host}:{settings.port}/console/ (sign in with the master key)\n", flush=True)

    def watch(self) -> int:
        """Block until a signal, a child that keeps crashing, or the parent (make) going away;
        a child that died is started again after a backoff (0.5 s, doubling, at most 10 s)."""
        parent = os.getppid()
        while not self.stopping:
            now = time.monotonic()
            for child in self.children:
                if child.restart_at is not None:
                    if now >= child.restart_at:
                        child.restart_at = None
                        try:
                            child.process = child.start()
                        except RuntimeError as exc:
                            log.error("%s could not be started again: %s", child.name, exc)
                            return 1
                        log.warning("%s started again (pid %d)", child.name, child.process.pid)
                    continue
                if child.process.poll() is None:
                    continue
                child.deaths.append(now)
                while child.deaths and now - child.deaths[0] > CRASH_WINDOW_SECONDS:
                    child.deaths.popleft()
                if len(child.deaths) >= CRASH_LIMIT:
                    log.error("%s exited with code %s, %d times in a minute: it keeps crashing; stopping everything",
                              child.name, child.process.returncode, len(child.deaths))
                    return 1
                delay = child.backoff()
                log.warning("%s exited with code %s; restarting it in %.1fs", child.name, child.process.returncode,
                            delay)
                child.restart_at = now + delay
            if os.getppid() != parent:
                log.info("parent went away; stopping")
                return 0
            time.sleep(0.2)
        return 0

    def stop(self) -> None:
        for child in reversed(self.children):
            log.info("stopping %s", child.name)
            stop_process(child.process)
        if self.postgres is not None:
            log.info("stopping Postgres")
            self.postgres.stop()


def run() -> int:
    settings = get_settings()
    logs.configure(settings.log_level, settings.log_format)
    supervisor = Supervisor(settings)

    def on_signal(signum: int, frame: object) -> None:
        supervisor.stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        supervisor.start()
        code = supervisor.watch()
    except PortInUse as exc:
        log.error("%s", exc)
        code = 1
    except Exception as exc:  # noqa: BLE001 — whatever failed, stop what started and say why
        if not supervisor.stopping:
            log.error("start-up failed: %s", exc)
            code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        supervisor.stop()
    log.info("stopped")
    return code


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "run"
    if command == "run":
        sys.exit(run())
    if command == "bench":
        from bench import run_all

        sys.exit(run_all())
    sys.exit(f"usage: python -m devstack [run|bench], not {command!r}")


if __name__ == "__main__":
    main()
