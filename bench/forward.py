"""Forwarding: events ingested at a fixed rate into Headwater (API and worker processes, a
Temporal dev server, Postgres), delivered to webhook sinks running in a separate process that
time each event from its send (stamped in the event, just before the ingest request that
commits it) to its arrival.

Scenarios: batch mode, one rule, offered more than it can take (its sustained rate); batch
mode over 10 rules to 10 sinks (the aggregate); single mode, one rule; batch and single mode
at 500 events/s offered (arrival latency). Baseline, on the same Temporal server: the naive
design, one workflow per event (start, run one delivery activity, complete).

The warehouse loader alone, 10,000 events a load (target ≥ 20,000 events/s). The ceiling, not
the offer: a backlog of DRAIN_EVENTS stored first, then one rule enabled, drained
to a webhook in batch mode and to the warehouse (a `postgres` destination: a database of its own
on the same Postgres server), events/s from enabling to the last delivery (target ≥ 10,000 each).
"""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import orjson
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from bench.stack import Tenant, bench_stack, ingest_at_rate, new_tenant, pct, serve
from bench.stamps import STAMP
from devstack.postgres import ensure_database
from devstack.processes import free_port, stop_process, wait_for_port
from devstack.temporal import start_dev_server
from forwarding.delivery import Outcome
from forwarding.warehouse import WarehouseLoader, WarehousePools

SECONDS = 10
SINKS = 10
BASELINE_EVENTS = 300
DRAIN_EVENTS = 200_000
LOADED = 200_000


@activity.defn(name="bench_deliver_one")
async def deliver_one(args: list[str]) -> None:
    url, body = args
    async with httpx.AsyncClient() as http:
        (await http.post(url, content=body, headers={"content-type": "application/json"})).raise_for_status()


@workflow.defn(name="BenchOneWorkflowPerEvent")
class OneWorkflowPerEvent:
    @workflow.run
    async def run(self, args: list[str]) -> None:
        await workflow.execute_activity(deliver_one, args, start_to_close_timeout=timedelta(seconds=30))


class Bench:
    def __init__(self, base: str, database_url: str, sink_ports: list[int]) -> None:
        self.base, self.database_url, self.sink_ports = base, database_url, sink_ports

    async def stats(self) -> dict[int, dict]:
        async with httpx.AsyncClient() as http:
            raw = (await http.get(f"http://127.0.0.1:{self.sink_ports[0]}/_stats")).json()
        return {int(port): value for port, value in raw.items()}

    async def setup(self, mode: str, rules: int = 1) -> Tenant:
        tenant = await new_tenant(self.database_url, f"forward-{mode}-{rules}")
        async with httpx.AsyncClient(base_url=self.base, headers=tenant.headers) as http:
            for n in range(rules):
                port = self.sink_ports[n]
                destination = (await http.post(f"/api/v1/workspaces/{tenant.workspace_id}/destinations", json={
                    "name": f"sink {n}", "type": "webhook",
                    "config": {"url": f"http://127.0.0.1:{port}/hook", "mode": mode, "max_batch_size": 500}})).json()
                response = await http.post(f"/api/v1/workspaces/{tenant.workspace_id}/event-forwarding-rules",
                                           json={"name": f"rule {n}", "destination_id": destination["id"]})
                assert response.status_code == 201, response.text
        await asyncio.sleep(1.0)  # let the workflows start and go idle
        await self.stats()  # start counting from zero
        return tenant

    async def run(self, label: str, tenant: Tenant, rate: int, seconds: float, rules: int = 1,
                  batch_size: int = 100) -> tuple[float, list[float]]:
        started_ns = time.time_ns()
        sent = await ingest_at_rate(self.base, tenant.write_key, rate, seconds, batch_size)
        offered = sent / seconds
        expected = sent * rules
        received, lags, last_ns, last_change, last = 0, [], 0, time.perf_counter(), -1
        while received < expected and time.perf_counter() - last_change < 15:
            await asyncio.sleep(0.5)
            for value in (await self.stats()).values():
                received += value["events"]
                lags += value["lags_ms"]
                last_ns = max(last_ns, value["last_ns"])
            if received != last:
                last, last_change = received, time.perf_counter()
        rate_done = received / ((last_ns - started_ns) / 1e9) if received else 0.0  # first send → last arrival
        print(f"{label}: offered {offered:,.0f} events/s × {seconds:.0f} s; delivered {received:,} of {expected:,} "
              f"at {rate_done:,.0f} events/s; lag p50 {pct(lags, 0.5):,.0f} ms, p99 {pct(lags, 0.99):,.0f} ms, "
              f"max {max(lags, default=0):,.0f} ms")
        return rate_done, lags

    async def baseline(self, client: Client, task_queue: str) -> float:
        url = f"http://127.0.0.1:{self.sink_ports[0]}/hook"
        await self.stats()
        async with Worker(client, task_queue=task_queue, workflows=[OneWorkflowPerEvent], activities=[deliver_one],
                          workflow_runner=UnsandboxedWorkflowRunner(), max_concurrent_activities=100):
            started = time.perf_counter()
            handles = []
            for n in range(BASELINE_EVENTS):
                body = orjson.dumps({"id": f"evt_{n}", "properties": {STAMP: time.time_ns()}}).decode()
                handles.append(await client.start_workflow(OneWorkflowPerEvent.run, [url, body],
                                                           id=f"bench-one-{uuid.uuid4()}", task_queue=task_queue))
            await asyncio.gather(*(handle.result() for handle in handles))
            elapsed = time.perf_counter() - started
        lags = [lag for value in (await self.stats()).values() for lag in value["lags_ms"]]
        rate = BASELINE_EVENTS / elapsed
        print(f"baseline, one workflow per event: {BASELINE_EVENTS} events at {rate:,.0f} events/s; "
              f"lag p50 {pct(lags, 0.5):,.0f} ms, p99 {pct(lags, 0.99):,.0f} ms")
        return rate


async def drain(base: str, database_url: str, config: dict, kind: str) -> float:
    """DRAIN_EVENTS stored behind a disabled rule, then the rule enabled: events/s drained."""
    tenant = await new_tenant(database_url, f"drain-{kind}")
    workspace = f"/api/v1/workspaces/{tenant.workspace_id}"
    async with httpx.AsyncClient(base_url=base, headers=tenant.headers, timeout=60) as http:
        destination = (await http.post(f"{workspace}/destinations", json={
            "name": kind, "type": kind, "config": config})).json()
        rule = (await http.post(f"{workspace}/event-forwarding-rules", json={
            "name": kind, "destination_id": destination["id"], "enabled": False})).json()
        async with httpx.AsyncClient(base_url=base, headers={"X-Write-Key": tenant.write_key}, timeout=60) as ingest:
            body = {"batch": [{"type": "track", "event": "Drained", "userId": "u",
                               "properties": {"order_id": "ORD-1", "total": 9.99, "items": ["a", "b"]}}] * 500}
            for _ in range(DRAIN_EVENTS // 4000):
                answers = await asyncio.gather(*(ingest.post("/v1/batch", json=body) for _ in range(8)))
                assert all(a.status_code == 200 for a in answers)
        started = time.perf_counter()
        assert (await http.put(f"{workspace}/event-forwarding-rules/{rule['id']}", json={"enabled": True})).status_code == 200
        while True:
            stats = (await http.get(f"{workspace}/event-forwarding-rules/{rule['id']}")).json()["stats"]
            if stats["delivered"] + stats["dead_lettered"] >= DRAIN_EVENTS:
                break
            await asyncio.sleep(0.25)
    rate = DRAIN_EVENTS / (time.perf_counter() - started)
    print(f"drain, {kind}: {DRAIN_EVENTS:,} stored events delivered at {rate:,.0f} events/s "
          f"({stats['dead_lettered']} dead letters)")
    return rate


async def load_rate(dsn: str) -> float:
    """The warehouse loader alone (no engine, no Temporal): LOADED events, 10,000 a load, into
    a table of their own. Events/s loaded."""
    pools = WarehousePools()
    loader = WarehouseLoader(pools, {"dsn": dsn, "schema": "bench_load", "table_per": "type"})
    body = {"name": "Loaded", "type": "track", "event": "Loaded", "user_id": "u", "timestamp": "2026-12-03T14:00:00Z",
            "received_at": "2026-12-03T14:00:00Z", "context": {"ip": "203.0.113.1", "library": {"name": "x"}},
            "properties": {"order_id": "ORD-1", "total": 9.99, "items": ["a", "b"], "paid": True}}
    elapsed = 0.0
    for start in range(0, LOADED, 10_000):
        ids = [f"evt_{n:026d}" for n in range(start, start + 10_000)]
        bodies = [orjson.dumps({**body, "id": event_id}).decode() for event_id in ids]
        [delivery] = loader.group(ids, bodies, ids)
        started = time.perf_counter()
        answer = await loader.send(delivery)
        elapsed += time.perf_counter() - started
        assert answer.outcome == Outcome.DELIVERED, answer
    await pools.close()
    rate = LOADED / elapsed
    print(f"warehouse loader alone: {LOADED:,} events, 10,000 a load, at {rate:,.0f} events/s")
    return rate


def verdict(value: float, target: float) -> str:
    return f"{'ok' if value >= target else 'MISSED'}: target ≥ {target:,.0f}"


async def scenarios(bench: Bench, client: Client, warehouse_dsn: str) -> None:
    batch_rate, _ = await bench.run("batch mode, 1 rule", await bench.setup("batch"), rate=5500, seconds=SECONDS)
    fan_rate, _ = await bench.run(f"batch mode, {SINKS} rules to {SINKS} sinks", await bench.setup("batch", SINKS),
                                  rate=550, seconds=SECONDS, rules=SINKS, batch_size=20)
    single_rate, _ = await bench.run("single mode, 1 rule", await bench.setup("single"), rate=600, seconds=SECONDS,
                                     batch_size=20)
    _, batch_lags = await bench.run("batch mode at 500/s", await bench.setup("batch"), rate=500, seconds=SECONDS,
                                    batch_size=5)
    _, single_lags = await bench.run("single mode at 500/s", await bench.setup("single"), rate=500, seconds=SECONDS,
                                     batch_size=5)
    baseline = await bench.baseline(client, "bench-baseline")
    webhook_drain = await drain(bench.base, bench.database_url, {
        "url": f"http://127.0.0.1:{bench.sink_ports[0]}/hook", "mode": "batch", "max_batch_size": 500}, "webhook")
    warehouse_drain = await drain(bench.base, bench.database_url, {"dsn": warehouse_dsn, "table_per": "type"},
                                  "postgres")
    loaded = await load_rate(warehouse_dsn)
    print()
    print(f"batch mode, one rule:   {batch_rate:>8,.0f} events/s ({verdict(batch_rate, 5000)}); "
          f"{batch_rate / baseline:,.0f}× the baseline")
    print(f"batch mode, {SINKS} rules:  {fan_rate:>8,.0f} events/s aggregate ({verdict(fan_rate, 5000)})")
    print(f"single mode, one rule:  {single_rate:>8,.0f} events/s ({verdict(single_rate, 500)}); "
          f"{single_rate / baseline:,.1f}× the baseline")
    for label, lags in (("batch", batch_lags), ("single", single_lags)):
        p50, p99 = pct(lags, 0.5), pct(lags, 0.99)
        ok = p50 < 1000 and p99 < 3000
        print(f"{label} mode at 500/s:   p50 {p50:,.0f} ms, p99 {p99:,.0f} ms "
              f"({'ok' if ok else 'MISSED'}: target p50 < 1,000, p99 < 3,000)")
    print(f"baseline (one workflow per event): {baseline:,.0f} events/s")
    print(f"warehouse loader alone:    {loaded:>8,.0f} events/s ({verdict(loaded, 20_000)}); "
          f"{loaded / webhook_drain:.2f}x the webhook batch drain")
    print(f"drain, webhook batch mode: {webhook_drain:>8,.0f} events/s ({verdict(webhook_drain, 10_000)})")
    print(f"drain, warehouse:          {warehouse_drain:>8,.0f} events/s ({verdict(warehouse_drain, 10_000)}); "
          f"{warehouse_drain / webhook_drain:.2f}x the webhook drain")


def main() -> None:
    print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}, "
          f"{os.cpu_count()} cores")
    with bench_stack() as stack:
        temporal_port = free_port()
        temporal = start_dev_server(None, temporal_port, None, Path(stack.tmp) / "temporal.log")
        sink_ports = [free_port() for _ in range(SINKS)]
        sinks = subprocess.Popen([sys.executable, "-m", "bench.webhook_sink", *map(str, sink_ports)])
        api_port = free_port()
        env = {"DATABASE_URL": stack.database_url, "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
               "HEADWATER_TASK_QUEUE": "bench", "HEADWATER_ALLOW_PRIVATE_DESTINATIONS": "true",
               "HEADWATER_LOG_LEVEL": "WARNING", "HEADWATER_PORT": str(api_port), "HEADWATER_FORWARD_IDLE_SECONDS": "5"}
        worker = subprocess.Popen([sys.executable, "worker.py"], env={**os.environ, **env})
        try:
            wait_for_port("127.0.0.1", sink_ports[0], 30, sinks, what="sinks")
            with serve(["-m", "web"], api_port, env):
                async def go() -> None:
                    client = await Client.connect(f"127.0.0.1:{temporal_port}")
                    server = stack.database_url.rpartition("/")[0]
                    await ensure_database(f"{server}/postgres", "warehouse")
                    await scenarios(Bench(f"http://127.0.0.1:{api_port}", stack.database_url, sink_ports), client,
                                    f"{server}/warehouse")
                asyncio.run(go())
        finally:
            for process in (worker, sinks, temporal):
                stop_process(process)


if __name__ == "__main__":
    main()
