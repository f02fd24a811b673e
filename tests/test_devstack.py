"""`make run`'s supervisor, for real: embedded Postgres, Temporal dev server with its UI,
worker and API come up; the first-run master key works; a killed worker or API is started
again, one that keeps dying stops everything; SIGTERM stops every child; a second run reuses
the data and prints no new key; a port in use is named before anything starts."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import psutil

from devstack.processes import free_port


def start(data_dir, ports: dict[str, int]) -> tuple[subprocess.Popen, list[str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEMPORAL_ADDRESS")}
    env.update({
        "HEADWATER_DATA_DIR": str(data_dir),
        "HEADWATER_PORT": str(ports["api"]),
        "HEADWATER_PG_PORT": str(ports["pg"]),
        "HEADWATER_TEMPORAL_PORT": str(ports["temporal"]),
        "HEADWATER_TEMPORAL_UI_PORT": str(ports["ui"]),
        "PYTHONUNBUFFERED": "1",
    })
    process = subprocess.Popen([sys.executable, "-m", "devstack", "run"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    # Drain the pipe all along, so the children never block on a full pipe.
    threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True).start()
    return process, lines


def wait_ready(process: subprocess.Popen, lines: list[str], api_port: int, timeout: float = 120) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        assert process.poll() is None, "\n".join(lines)
        try:
            if httpx.get(f"http://127.0.0.1:{api_port}/readyz", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("not ready in time:\n" + "\n".join(lines))


def stop(process: subprocess.Popen, lines: list[str]) -> None:
    children = psutil.Process(process.pid).children(recursive=True)
    assert children, "the supervisor should have children"
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    assert process.returncode == 0, "\n".join(lines)
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [p.info if hasattr(p, "info") else p for p in alive]


def child(process: subprocess.Popen, module: str, other_than: int | None = None, timeout: float = 60):
    """The supervisor's child running `python -m <module>` (a new one, if `other_than`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in psutil.Process(process.pid).children():
            try:
                cmdline = proc.cmdline()
            except psutil.NoSuchProcess:
                continue
            if cmdline[-2:] == ["-m", module] and proc.pid != other_than and proc.status() != psutil.STATUS_ZOMBIE:
                return proc
        time.sleep(0.1)
    raise AssertionError(f"no {module} child")


def test_make_run_stack(tmp_path):
    ports = {"api": free_port(), "pg": free_port(), "temporal": free_port(), "ui": free_port()}
    process, lines = start(tmp_path / "data", ports)
    try:
        elapsed = wait_ready(process, lines, ports["api"])
        assert elapsed < 120
        output = "\n".join(lines)
        workspace_id = re.search(r"workspace id: ([0-9a-f-]{36})", output).group(1)
        key = re.search(r"master key:\s+(mk_\S+)", output).group(1)
        got = httpx.get(f"http://127.0.0.1:{ports['api']}/api/v1/workspaces/{workspace_id}",
                        headers={"Authorization": f"Bearer {key}"})
        assert got.status_code == 200 and got.json()["name"] == "default"
        ui = httpx.get(f"http://127.0.0.1:{ports['ui']}/", timeout=10)
        assert ui.status_code == 200

        # A killed worker, then a killed API, are started again and the stack is ready again.
        for module in ("worker", "web"):
            victim = child(process, module)
            victim.kill()
            child(process, module, other_than=victim.pid)
            wait_ready(process, lines, ports["api"])
            assert any(f"{'worker' if module == 'worker' else 'api'} exited with code -9; restarting" in line
                       for line in lines), "\n".join(lines)
    finally:
        if process.poll() is None:
            stop(process, lines)
        else:
            print("\n".join(lines))

    # A second run reuses the data: same workspace, no new key.
    process, lines = start(tmp_path / "data", ports)
    try:
        wait_ready(process, lines, ports["api"])
        output = "\n".join(lines)
        assert workspace_id in output
        assert "mk_" not in output
        got = httpx.get(f"http://127.0.0.1:{ports['api']}/api/v1/workspaces/{workspace_id}",
                        headers={"Authorization": f"Bearer {key}"})
        assert got.status_code == 200
    finally:
        if process.poll() is None:
            stop(process, lines)
        else:
            print("\n".join(lines))


def test_a_part_that_keeps_crashing_stops_everything(tmp_path):
    ports = {"api": free_port(), "pg": free_port(), "temporal": free_port(), "ui": free_port()}
    process, lines = start(tmp_path / "data", ports)
    try:
        wait_ready(process, lines, ports["api"])
        children = psutil.Process(process.pid).children(recursive=True)
        victim = None
        for _ in range(5):
            victim = child(process, "worker", other_than=victim.pid if victim else None)
            victim.kill()
        process.wait(timeout=60)
        assert process.returncode == 1
        assert any("worker exited with code -9, 5 times in a minute" in line for line in lines), "\n".join(lines)
        _, alive = psutil.wait_procs([c for c in children if c.is_running()], timeout=15)
        assert not alive
    finally:
        if process.poll() is None:
            process.kill()


def test_a_port_in_use_is_named_before_anything_starts(tmp_path):
    ports = {"api": free_port(), "pg": free_port(), "temporal": free_port(), "ui": free_port()}
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports["temporal"]))
        holder.listen()
        process, lines = start(tmp_path / "data", ports)
        process.wait(timeout=60)
    time.sleep(0.2)  # the reader thread drains the last lines
    output = "\n".join(lines)
    assert process.returncode == 1, output
    assert f"port {ports['temporal']} (the Temporal dev server) is already in use" in output
    assert "HEADWATER_TEMPORAL_PORT" in output
    assert "Headwater is up" not in output and not (tmp_path / "data" / "postgres").exists()


def test_a_temporal_dev_server_that_fails_shows_its_log(tmp_path):
    ports = {"api": free_port(), "pg": free_port(), "temporal": free_port(), "ui": free_port()}
    (tmp_path / "data" / "temporal.db").mkdir(parents=True)  # a database file it cannot open
    process, lines = start(tmp_path / "data", ports)
    process.wait(timeout=120)
    time.sleep(0.2)
    output = "\n".join(lines)
    assert process.returncode == 1, output
    assert "Temporal dev server exited" in output and "the last lines of" in output, output
    assert "Headwater is up" not in output
