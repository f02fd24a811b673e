"""docker-compose.yml, the Dockerfile and .env.example agree with the settings object.
(No Docker engine runs here, so the compose file is checked, not started.)"""

from __future__ import annotations

import asyncio
import re
import time
import tomllib
from pathlib import Path

import yaml

from settings import Settings, environment_variables
from worker import build_worker

ROOT = Path(__file__).resolve().parent.parent
SETTING_NAMES = set(environment_variables().values())


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_every_service():
    services = compose()["services"]
    assert {"postgres", "temporal", "temporal-ui", "migrate", "api", "worker"} <= set(services)
    assert services["temporal"]["image"].startswith("temporalio/auto-setup:")
    assert services["temporal-ui"]["image"].startswith("temporalio/ui:")
    assert services["temporal"]["environment"]["DB"] == "postgres12"  # Postgres persistence
    assert services["postgres"]["image"].startswith("postgres:")
    from devstack.postgres import WRITE_HEAVY  # the same tuning as the embedded server
    assert services["postgres"]["command"] == ["postgres", *WRITE_HEAVY]


def test_headwater_services_use_only_known_settings():
    services = compose()["services"]
    for name in ("migrate", "api", "worker"):
        env = services[name]["environment"]
        unknown = set(env) - SETTING_NAMES
        assert not unknown, (name, unknown)
        assert env["DATABASE_URL"].split("@")[1].startswith("postgres:5432/")
        assert env["TEMPORAL_ADDRESS"] == "temporal:7233"
        assert env["HEADWATER_ALLOW_PRIVATE_DESTINATIONS"] == "false"
        assert services[name]["build"] == "."


def test_ports_agree_with_settings():
    services = compose()["services"]
    api = services["api"]
    port = int(api["environment"]["HEADWATER_PORT"])
    assert f"{port}:{port}" in api["ports"]
    assert api["environment"]["HEADWATER_HOST"] == "0.0.0.0"
    assert api["command"] == ["python", "-m", "web"]
    assert services["worker"]["command"] == ["python", "-m", "worker"]
    defaults = Settings()
    assert f"{defaults.temporal_ui_port}:8080" in services["temporal-ui"]["ports"]
    assert f"{defaults.temporal_port}:7233" in services["temporal"]["ports"]


def test_dockerfile_copies_what_the_services_run():
    dockerfile = (ROOT / "Dockerfile").read_text()
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    modules = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["py-modules"]
    every_package = [name.rstrip("*") for name in packages["include"]]
    for part in (*every_package, *(f"{m}.py" for m in modules), "migrations", "alembic.ini"):
        assert re.search(rf"COPY .*\b{re.escape(part)}\b", dockerfile), part


def test_env_example_lists_every_setting():
    lines = [line for line in (ROOT / ".env.example").read_text().splitlines()
             if line and not line.startswith("#")]
    listed = {line.split("=", 1)[0] for line in lines}
    assert listed == SETTING_NAMES


def test_long_running_services_restart_and_report_health():
    services = compose()["services"]
    for name, service in services.items():
        if service.get("restart") == "no":
            continue  # one-shots: migrate, search attributes
        assert service["restart"] == "unless-stopped", name
        if name != "temporal-ui":
            assert service["healthcheck"]["test"], name
    heartbeat = services["worker"]["environment"]["HEADWATER_WORKER_HEARTBEAT_FILE"]
    assert heartbeat in " ".join(services["worker"]["healthcheck"]["test"])


async def test_the_worker_heartbeat_file_is_touched_while_it_runs(settings, temporal_env, sessions, tmp_path):
    beat = tmp_path / "worker.alive"
    own = settings.model_copy(update={"worker_heartbeat_file": beat, "task_queue": "heartbeat-test"})
    async with build_worker(temporal_env.client, sessions, own):
        deadline = time.monotonic() + 10
        while not beat.exists():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
