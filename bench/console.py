"""The console's pages with a million events in the workspace.

Each page is its HTML shell plus the API calls its module makes on load (overview: volume for
7 days and 24 hours, rules, sources; events: a page of 50, unfiltered and filtered by name; …).
A page's server time here is the sum of those requests' times, one after another, over a
session cookie, as a browser without parallel requests would see it. The baseline is the same
pages for an empty workspace in the same run. Target: every page under 100 ms at p99.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import time

import httpx

from bench.observe import load_events
from bench.stack import BenchStack, bench_stack, new_tenant, pct, serve
from devstack.processes import free_port

EVENTS = int(os.environ.get("BENCH_CONSOLE_EVENTS", "1000000"))
RUNS = 30

PAGES: dict[str, list[str]] = {
    "overview": ["/console/", "events/volume?hours=168", "events/volume?hours=24", "event-forwarding-rules?limit=100",
                 "event-keys?limit=100"],
    "events": ["/console/events", "events?limit=50"],
    "events, filtered": ["/console/events", "events?limit=50&name=event_7"],
    "events, next page": ["/console/events", "events?limit=50&cursor={cursor}"],
    "live": ["/console/live"],
    "claim": ["/console/claim"],
    "sources": ["/console/sources", "event-keys?limit=100"],
    "contracts": ["/console/contracts", "event-contracts?limit=100"],
    "transformations": ["/console/transformations", "event-transformations?limit=100"],
    "destinations and rules": ["/console/rules", "destinations?limit=100", "event-forwarding-rules?limit=100"],
}


async def signed_in(base: str, key: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=base, timeout=30)
    response = await client.post("/console/sign-in", data={"master_key": key})
    assert response.status_code == 302, response.text
    return client


async def page_times(client: httpx.AsyncClient, workspace: str) -> dict[str, list[float]]:
    first = (await client.get(f"/api/v1/workspaces/{workspace}/events?limit=50")).json()
    cursor = first["next_cursor"]
    pages = {name: paths for name, paths in PAGES.items() if cursor or "{cursor}" not in "".join(paths)}
    times: dict[str, list[float]] = {name: [] for name in pages}
    for _ in range(RUNS):
        for name, paths in pages.items():
            total = 0.0
            for path in paths:
                url = path if path.startswith("/") else f"/api/v1/workspaces/{workspace}/{path.format(cursor=cursor)}"
                started = time.perf_counter()
                response = await client.get(url)
                total += time.perf_counter() - started
                assert response.status_code == 200, (url, response.status_code, response.text[:200])
            times[name].append(total * 1000)
    return times


async def main_async(stack: BenchStack) -> None:
    empty = await new_tenant(stack.database_url, "console-empty")
    full = await new_tenant(stack.database_url, "console-full")
    started = time.perf_counter()
    await load_events(stack.database_url, full.workspace_id, EVENTS)
    print(f"loaded {EVENTS:,} events over 30 days in {time.perf_counter() - started:.0f} s")
    port = free_port()
    env = {"DATABASE_URL": stack.database_url, "HEADWATER_PORT": str(port), "HEADWATER_LOG_LEVEL": "WARNING",
           "TEMPORAL_ADDRESS": "127.0.0.1:1"}  # the pages' reads do not need Temporal
    with serve(["-m", "web"], port, env):
        base = f"http://127.0.0.1:{port}"
        baseline_client, client = await signed_in(base, empty.master_key), await signed_in(base, full.master_key)
        baseline = await page_times(baseline_client, str(empty.workspace_id))
        loaded = await page_times(client, str(full.workspace_id))
        await baseline_client.aclose()
        await client.aclose()
    worst = 0.0
    print(f"{'page':<24} {'p50 ms':>8} {'p99 ms':>8}   empty p50   ratio")
    for name in loaded:
        empty_p50 = statistics.median(baseline.get(name) or baseline["events"])  # an empty workspace has no page 2
        p50, p99 = statistics.median(loaded[name]), pct(loaded[name], 0.99)
        worst = max(worst, p99)
        print(f"{name:<24} {p50:8.1f} {p99:8.1f}   {empty_p50:9.1f}   {p50 / empty_p50:5.2f}x")
    print(f"slowest page p99 {worst:.1f} ms with {EVENTS:,} events ({'ok' if worst < 100 else 'MISSED'}: target < 100 ms)")


def main() -> None:
    print(f"machine: {platform.machine()} python {platform.python_version()}, {os.cpu_count()} cores")
    with bench_stack() as stack:
        asyncio.run(main_async(stack))


if __name__ == "__main__":
    main()
