"""Seeing what flows, at scale.

1. Volume: `GET /events/volume?hours=24` on a workspace holding 10 million events spread over
   30 days, against the naive query (`GROUP BY date_trunc('hour', received_at)` over the
   events table) in the same run. The events are loaded with one SQL statement (ingesting
   10 million through the API would take ~15 minutes here) and their hourly counts with the
   migration's backfill query; that ingest keeps the counts exact is what the tests show.
2. Live: 50 SSE clients (in two client processes) on one API process while events are
   ingested at 1,000 events/s; each event carries its send time, each client records when
   it arrived. Target: arrival lag p99 under 1 s.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid

import asyncpg
import httpx
import orjson

from bench.stack import BenchStack, bench_stack, ingest_at_rate, new_tenant, pct, serve
from devstack.processes import free_port

EVENTS = int(os.environ.get("BENCH_OBSERVE_EVENTS", "10000000"))
CLIENTS = 50
CLIENT_PROCESSES = 2
RATE = 1_000
LIVE_SECONDS = 10

NAIVE = """
SELECT type, name, date_trunc('hour', received_at, 'UTC') AS hour_bucket, count(*)
FROM events WHERE workspace_id = $1 AND received_at >= date_trunc('hour', now(), 'UTC') - interval '23 hours'
GROUP BY 1, 2, 3 ORDER BY 3, 1, 2
"""


async def load_events(url: str, workspace_id: uuid.UUID, count: int = EVENTS) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("""
            INSERT INTO events (id, workspace_id, type, name, user_id, timestamp, received_at, body)
            SELECT 'evt_bench' || lpad(g::text, 12, '0'), $1, 'track', 'event_' || (g % 20), 'u' || (g % 1000), t, t,
                   jsonb_build_object('type', 'track', 'event', 'event_' || (g % 20))
            FROM generate_series(1, $2::int) AS g,
                 LATERAL (SELECT now() - (g % 2592000) * interval '1 second' AS t) AS at
        """, workspace_id, count)
        await conn.execute("""
            INSERT INTO event_volume_hourly (workspace_id, hour_bucket, event_type, event_name, event_count)
            SELECT workspace_id, date_trunc('hour', received_at, 'UTC'), type, coalesce(name, ''), count(*)
            FROM events WHERE workspace_id = $1 GROUP BY 1, 2, 3, 4
        """, workspace_id)
        await conn.execute("VACUUM ANALYZE events")
        await conn.execute("VACUUM ANALYZE event_volume_hourly")
    finally:
        await conn.close()


async def time_naive(url: str, workspace_id: uuid.UUID, runs: int = 5) -> tuple[list[float], int]:
    conn = await asyncpg.connect(url)
    try:
        timings, rows = [], 0
        for _ in range(runs):
            started = time.perf_counter()
            rows = len(await conn.fetch(NAIVE, workspace_id))
            timings.append((time.perf_counter() - started) * 1000)
        return timings, rows
    finally:
        await conn.close()


async def time_api(base: str, workspace_id: uuid.UUID, key: str, runs: int = 50) -> tuple[list[float], int]:
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}) as http:
        timings, rows = [], 0
        for _ in range(runs + 5):
            started = time.perf_counter()
            response = await http.get(f"/api/v1/workspaces/{workspace_id}/events/volume?hours=24")
            timings.append((time.perf_counter() - started) * 1000)
            rows = len(response.json())
        return timings[5:], rows  # the first few warm the caches


def live_clients_command(port: int, workspace_id: uuid.UUID, key: str, count: int, seconds: float) -> list[str]:
    return [sys.executable, "-m", "bench.sse_clients", str(port), str(workspace_id), key, str(count), str(seconds)]


async def main_async(stack: BenchStack) -> None:
    tenant = await new_tenant(stack.database_url)
    key = tenant.master_key
    started = time.perf_counter()
    await load_events(stack.database_url, tenant.workspace_id)
    print(f"loaded {EVENTS:,} events over 30 days in {time.perf_counter() - started:.0f} s")

    port = free_port()
    env = {"DATABASE_URL": stack.database_url, "HEADWATER_PORT": str(port), "HEADWATER_LOG_LEVEL": "WARNING",
           "TEMPORAL_ADDRESS": "127.0.0.1:1"}  # volume and live do not need Temporal
    with serve(["-m", "web"], port, env):
        base = f"http://127.0.0.1:{port}"
        naive, naive_rows = await time_naive(stack.database_url, tenant.workspace_id)
        api, api_rows = await time_api(base, tenant.workspace_id, key)
        assert api_rows == naive_rows, (api_rows, naive_rows)
        print(f"volume, 24 h, {api_rows} rows: API p50 {statistics.median(api):.1f} ms, p99 {pct(api, 0.99):.1f} ms "
              f"({'ok' if pct(api, 0.99) < 100 else 'MISSED'}: target < 100 ms)")
        print(f"baseline, naive GROUP BY date_trunc over events (SQL only): median {statistics.median(naive):.0f} ms")
        print(f"ratio naive / API p50: {statistics.median(naive) / statistics.median(api):.0f}x")

        per_process = CLIENTS // CLIENT_PROCESSES
        # Started here, read after the ingest: nothing waits on them while the loop has work.
        clients = [subprocess.Popen(live_clients_command(port, tenant.workspace_id, key, per_process,  # noqa: ASYNC220
                                                         LIVE_SECONDS + 4), stdout=subprocess.PIPE, text=True)
                   for _ in range(CLIENT_PROCESSES)]
        await asyncio.sleep(2)  # let every client connect
        sent = await ingest_at_rate(base, tenant.write_key, RATE, LIVE_SECONDS)
        lags, dropped, received = [], 0, 0
        for process in clients:
            out, _ = process.communicate(timeout=60)
            result = orjson.loads(out.strip().splitlines()[-1])
            lags += result["lags_ms"]
            dropped += result["dropped"]
            received += result["received"]
        expected = sent * CLIENTS
        print(f"live: {CLIENTS} clients, {sent / LIVE_SECONDS:,.0f} events/s for {LIVE_SECONDS} s: "
              f"received {received:,} of {expected:,} ({dropped:,} reported dropped)")
        print(f"live arrival lag (send → client): p50 {pct(lags, 0.5):.0f} ms, p99 {pct(lags, 0.99):.0f} ms "
              f"({'ok' if pct(lags, 0.99) < 1000 else 'MISSED'}: target p99 < 1,000 ms)")


def main() -> None:
    print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}, "
          f"{os.cpu_count()} cores")
    with bench_stack() as stack:
        asyncio.run(main_async(stack))


if __name__ == "__main__":
    main()
