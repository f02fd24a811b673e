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
    assert "ports" not in api and str(port) in api["expose"]  # replicas: only the proxy publishes
    assert f"{port}:8000" in services["proxy"]["ports"]
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


def test_replicas_behind_a_proxy_that_the_api_trusts():
    """Two API replicas and two workers; the proxy balances over every replica's address and
    the API trusts its X-Forwarded-For (the compose network's subnet, and nothing wider)."""
    spec = compose()
    services = spec["services"]
    assert services["api"]["deploy"]["replicas"] >= 2 and services["worker"]["deploy"]["replicas"] >= 2
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    assert re.search(rf"dynamic a api {services['api']['environment']['HEADWATER_PORT']}\b", caddyfile)
    assert "flush_interval -1" in caddyfile  # the live debugger's SSE is not buffered
    subnet = spec["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert services["api"]["environment"]["HEADWATER_TRUSTED_PROXIES"] == f"${{HEADWATER_TRUSTED_PROXIES:-{subnet}}}"
    assert Settings(trusted_proxies=subnet).trusted_proxies == [subnet]


def test_prometheus_scrapes_every_replica_and_loads_the_alerts():
    services = compose()["services"]
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    api = jobs["headwater-api"]["dns_sd_configs"][0]
    assert api["names"] == ["api"] and api["port"] == int(services["api"]["environment"]["HEADWATER_PORT"])
    assert jobs["headwater-api"]["authorization"]["credentials_file"] == services["prometheus"]["secrets"][0]["target"]
    worker = jobs["headwater-worker"]["dns_sd_configs"][0]
    assert worker["names"] == ["worker"]
    assert worker["port"] == int(services["worker"]["environment"]["HEADWATER_WORKER_METRICS_PORT"])
    mounted = " ".join(services["prometheus"]["volumes"])
    for rule_file in prometheus["rule_files"]:
        assert f"deploy/prometheus/{Path(rule_file).name}:{rule_file}" in mounted
    alerts = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    names = {rule["alert"] for group in alerts["groups"] for rule in group["rules"]}
    assert {"HeadwaterRuleLagging", "HeadwaterDeadLetters", "HeadwaterGroupCommitFailing"} <= names
    grafana = " ".join(services["grafana"]["volumes"])
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards" in grafana
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/headwater.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
