"""Scale-out on one machine: the same load against one API process and against two, and the
same forwarding backlog drained by one worker and by two, printed as ratios (two / one).

1. ingest: `/v1/batch` (100 events per request, 16 connections in all) and `/v1/track` (64
   connections in all), against one API process, then split evenly over two;
2. forwarding: a backlog of RULES × BACKLOG events (stored first, then the rules enabled: a
   drain, not an offered rate), rules in batch mode to webhook sinks in their own process,
   drained by one worker, then (a new workspace, the same backlog) by two.

On 2 cores the second process competes with Postgres, the load generator and the sinks for
the same two cores: the ratios say how much of a second core's worth each side can take, and
so what a machine with more cores, or a second machine, can expect.
"""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx
import orjson

from bench.stack import Tenant, bench_stack, load, new_tenant, serve
from bench.stamps import STAMP
from devstack.processes import free_port, stop_process, wait_for_port
from devstack.temporal import start_dev_server

ROUND_SECONDS = 4
RULES = 4
BACKLOG = 24_000  # events, each delivered once per rule (a multiple of 2,000: stored 2,000 at a time)

TRACK = {"type": "track", "event": "purchase_completed", "userId": "user-123",
         "properties": {"order_id": "ORD-456", "total": 99.99, "currency": "USD"}}


def ingest(ports: list[int], body: bytes, path: str, connections: int, per_request: int, tmp: Path,
           key: list[str]) -> float:
    """Events/s with `connections` split evenly over the API processes on `ports`, one load
    generator per process, all at once."""
    with ThreadPoolExecutor(len(ports)) as pool:
        runs = list(pool.map(lambda port: load(f"http://127.0.0.1:{port}{path}", body, tmp, headers=key,
                                               connections=connections // len(ports), seconds=ROUND_SECONDS),
                             ports))
    assert not any(run["errors"] for run in runs), runs
    return sum(run["rps"] for run in runs) * per_request


def one_against_two(ports: list[int], body: bytes, path: str, connections: int, per_request: int, tmp: Path,
                    key: list[str]) -> tuple[float, float]:
    """Rounds ordered one/two/two/one, twice, with both processes up throughout (an idle one
    costs nothing): a drift in the machine's speed falls on both sides alike."""
    rounds: dict[int, list[float]] = {1: [], 2: []}
    for processes in (1, 2, 2, 1) * 2:
        rounds[processes].append(ingest(ports[:processes], body, path, connections, per_request, tmp, key))
    one, two = (sum(rounds[n]) / len(rounds[n]) for n in (1, 2))
    print(f"1. {path}: one API process {one:>9,.0f} events/s "
          f"(rounds: {', '.join(f'{r:,.0f}' for r in rounds[1])}); two {two:>9,.0f} events/s "
          f"(rounds: {', '.join(f'{r:,.0f}' for r in rounds[2])})")
    return one, two


async def store_backlog(base: str, tenant: Tenant) -> None:
    async with httpx.AsyncClient(base_url=base, headers={"X-Write-Key": tenant.write_key}, timeout=60) as http:
        for _ in range(BACKLOG // 2000):
            batches = [[{**TRACK, "properties": {**TRACK["properties"], STAMP: time.time_ns()}} for _n in range(500)]
                       for _b in range(4)]
            answers = await asyncio.gather(*(http.post("/v1/batch", json={"batch": b}) for b in batches))
            assert all(a.status_code == 200 for a in answers), answers[0].text


async def drain(base: str, database_url: str, sink_ports: list[int], label: str) -> float:
    """RULES rules made disabled (a rule forwards what is committed after it), the backlog
    stored, then the rules enabled; events/s from enabling to the last event's arrival."""
    tenant = await new_tenant(database_url, f"scale-{label}")
    workspace = f"/api/v1/workspaces/{tenant.workspace_id}"
    async with httpx.AsyncClient(base_url=base, headers=tenant.headers, timeout=30) as http:
        rules = []
        for port in sink_ports[:RULES]:
            destination = (await http.post(f"{workspace}/destinations", json={
                "name": f"sink {port}", "type": "webhook",
                "config": {"url": f"http://127.0.0.1:{port}/hook", "mode": "batch", "max_batch_size": 500}})).json()
            rule = await http.post(f"{workspace}/event-forwarding-rules", json={
                "name": f"rule {port}", "destination_id": destination["id"], "enabled": False})
            assert rule.status_code == 201, rule.text
            rules.append(rule.json()["id"])
        await store_backlog(base, tenant)
        await http.get(f"http://127.0.0.1:{sink_ports[0]}/_stats")  # count from zero
        started_ns = time.time_ns()
        for rule_id in rules:
            answer = await http.put(f"{workspace}/event-forwarding-rules/{rule_id}", json={"enabled": True})
            assert answer.status_code == 200, answer.text
        expected, received, last_ns, last_change = BACKLOG * RULES, 0, started_ns, time.perf_counter()
        while received < expected and time.perf_counter() - last_change < 30:
            await asyncio.sleep(0.5)
            stats = orjson.loads((await http.get(f"http://127.0.0.1:{sink_ports[0]}/_stats")).content)
            for value in stats.values():
                if value["events"]:
                    received += value["events"]
                    last_ns, last_change = max(last_ns, value["last_ns"]), time.perf_counter()
    rate = received / ((last_ns - started_ns) / 1e9)
    print(f"2. forwarding, {label}: drained {received:,} of {expected:,} deliveries "
          f"({RULES} rules × {BACKLOG:,} events) at {rate:,.0f} events/s")
    return rate


def main() -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with bench_stack() as stack, ExitStack() as running:
        temporal_port = free_port()
        temporal = start_dev_server(None, temporal_port, None, Path(stack.tmp) / "temporal.log")
        running.callback(stop_process, temporal)
        env = {"DATABASE_URL": stack.database_url, "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
               "HEADWATER_TASK_QUEUE": "bench", "HEADWATER_ALLOW_PRIVATE_DESTINATIONS": "true",
               "HEADWATER_LOG_LEVEL": "WARNING", "HEADWATER_FORWARD_IDLE_SECONDS": "5"}
        key = [f"X-Write-Key: {stack.write_key}"]
        batch_body = orjson.dumps({"batch": [TRACK] * 100})
        track_body = orjson.dumps(TRACK)

        ports = [free_port(), free_port()]
        ingest_ratios = {}
        with serve(["-m", "web"], ports[0], {**env, "HEADWATER_PORT": str(ports[0])}), \
                serve(["-m", "web"], ports[1], {**env, "HEADWATER_PORT": str(ports[1])}):
            for door, body, connections, per_request in (("/v1/batch", batch_body, 16, 100),
                                                         ("/v1/track", track_body, 64, 1)):
                one, two = one_against_two(ports, body, door, connections, per_request, stack.tmp, key)
                ingest_ratios[door] = two / one

        sink_ports = [free_port() for _ in range(RULES)]
        sinks = subprocess.Popen([sys.executable, "-m", "bench.webhook_sink", *map(str, sink_ports)])
        running.callback(stop_process, sinks)
        wait_for_port("127.0.0.1", sink_ports[0], 30, sinks, what="sinks")
        workers = []
        with serve(["-m", "web"], ports[0], {**env, "HEADWATER_PORT": str(ports[0])}):
            base = f"http://127.0.0.1:{ports[0]}"
            for count in (1, 2):
                while len(workers) < count:
                    worker = subprocess.Popen([sys.executable, "worker.py"], env={**os.environ, **env})
                    running.callback(stop_process, worker)
                    workers.append(worker)
                time.sleep(3)  # the new worker polls
                label = f"{count} worker{'s' if count > 1 else ''}"
                rate = asyncio.run(drain(base, stack.database_url, sink_ports, label))
                ingest_ratios[label] = rate
    print()
    print(f"/v1/batch, two API processes / one:  {ingest_ratios['/v1/batch']:.2f}x")
    print(f"/v1/track, two API processes / one:  {ingest_ratios['/v1/track']:.2f}x")
    print(f"forwarding drain, two workers / one: {ingest_ratios['2 workers'] / ingest_ratios['1 worker']:.2f}x "
          f"({ingest_ratios['1 worker']:,.0f} → {ingest_ratios['2 workers']:,.0f} events/s)")


if __name__ == "__main__":
    main()
