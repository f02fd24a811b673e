"""`python -m devstack run`: what `make run` runs.

Starts embedded Postgres (unless DATABASE_URL is set), applies migrations, starts the
Temporal dev server with its UI (unless TEMPORAL_ADDRESS is set), creates the `default`
workspace on first run, then runs the worker and the API until SIGINT or SIGTERM, and
stops every child it started, in reverse order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time

from cli import ensure_default_workspace
from devstack.migrate import upgrade
from devstack.processes import child_preexec, stop_process, wait_for_port
from devstack.temporal import start_dev_server
from settings import Settings, get_settings

log = logging.getLogger("headwater.devstack")


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self.postgres = None
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.stopping = False

    def child_env(self, database_url: str, temporal_address: str) -> dict[str, str]:
        env = dict(os.environ)
        env["DATABASE_URL"] = database_url
        env["TEMPORAL_ADDRESS"] = temporal_address
        env.setdefault("HEADWATER_ALLOW_PRIVATE_DESTINATIONS", "true")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        process = subprocess.Popen(args, env=env, preexec_fn=child_preexec, start_new_session=True)
        self.children.append((name, process))
        return process

    def start(self) -> None:
        settings = self.settings
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
            process = start_dev_server(self.data_dir / "temporal.db", settings.temporal_port,
                                       settings.temporal_ui_port, self.data_dir / "temporal.log")
            self.children.append(("temporal", process))
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

    def watch(self) -> int:
        """Block until a signal, a dead child, or the parent (make) going away."""
        parent = os.getppid()
        while not self.stopping:
            for name, process in self.children:
                if process.poll() is not None:
                    log.error("%s exited with code %s; stopping everything", name, process.returncode)
                    return 1
            if os.getppid() != parent:
                log.info("parent went away; stopping")
                return 0
            time.sleep(0.5)
        return 0

    def stop(self) -> None:
        for name, process in reversed(self.children):
            log.info("stopping %s", name)
            stop_process(process)
        if self.postgres is not None:
            log.info("stopping Postgres")
            self.postgres.stop()


def run() -> int:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    supervisor = Supervisor(settings)

    def on_signal(signum: int, frame: object) -> None:
        supervisor.stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        supervisor.start()
        code = supervisor.watch()
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
