"""Ingest benchmark. In one run, on this machine, with the load generator in its own process:

1. the generator's ceiling against a server that does nothing;
2. baseline: a minimal Quart app that parses the JSON and does one INSERT per request;
3. Headwater /v1/track, single events, 64 connections (target: >= 1.3x the baseline);
4. Headwater /v1/track at 500 req/s offered (target: p99 < 50 ms);
5. Headwater /v1/batch, 100 events per request (target: >= 20,000 events/s);
6. /v1/batch with an active `warn` contract of 10 properties, half the events violating it,
   against the same batches without it, in rounds ordered off/on/on/off twice (target: >= 0.85);
7. /v1/batch of typical audit events (redacted on arrival, the source's default) against the
   same batches of track events, in rounds ordered track/audit/audit/track;
8. the API process's RSS at the end (target: < 300 MB);
9. /v1/track and /v1/batch with metrics on (counted, served, scraped every second) against
   off, in rounds ordered off/on/on/off twice (target: within 5%).
"""

from __future__ import annotations

import platform
import random
import threading
import time

import httpx
import orjson
import psutil

from bench.redaction import typical
from bench.stack import bench_stack, load, serve
from devstack.processes import free_port

SECONDS = 10
CONTRACT_ORDER = (False, True, True, False) * 2
CONTRACT_ROUND_SECONDS = 4

CONTRACT_PROPERTIES = {f"field_{i}": {"type": "string" if i % 2 else "number", "required": True} for i in range(10)}


def checkout_step(i: int) -> dict:
    """10 properties; every other event has one of the wrong type."""
    properties = {f"field_{n}": (f"v{n}" if n % 2 else n) for n in range(10)}
    if i % 2:
        properties["field_0"] = "not a number"
    return {"type": "track", "event": "checkout_step", "userId": f"user-{i}", "properties": properties}


TRACK = {"event": "purchase_completed", "userId": "user-123",
         "properties": {"order_id": "ORD-456", "total": 99.99, "currency": "USD", "items": ["SKU-001", "SKU-002"]},
         "context": {"ip": "203.0.113.1", "user_agent": "Mozilla/5.0"}}


class Scraper(threading.Thread):
    """Prometheus, roughly: GET /metrics every second while the rounds run."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.stop, self.scrapes = url, token, threading.Event(), 0

    def run(self) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {self.token}"}) as http:
            while not self.stop.wait(1.0):
                http.get(self.url).raise_for_status()
                self.scrapes += 1


def metrics_cost(stack, env: dict[str, str], track_body: bytes, batch_body: bytes, key: list[str]) -> dict[str, float]:
    """9. The same load against an API process that counts and serves metrics (scraped every
    second) and one that does not, in rounds ordered off/on/on/off twice; both processes run
    throughout, so neither gets a warmer cache."""
    off_port, on_port = free_port(), free_port()
    ratios = {}
    with serve(["-m", "web"], off_port, {**env, "HEADWATER_PORT": str(off_port)}), \
            serve(["-m", "web"], on_port, {**env, "HEADWATER_PORT": str(on_port), "HEADWATER_METRICS_TOKEN": "bench"}):
        scraper = Scraper(f"http://127.0.0.1:{on_port}/metrics", "bench")
        scraper.start()
        for door, body, connections, per_request in (("/v1/track", track_body, 64, 1), ("/v1/batch", batch_body, 16, 100)):
            rounds: dict[bool, list[float]] = {False: [], True: []}
            for on in (False, True, True, False) * 2:
                run = load(f"http://127.0.0.1:{on_port if on else off_port}{door}", body, stack.tmp, headers=key,
                           seconds=CONTRACT_ROUND_SECONDS, connections=connections)
                rounds[on].append(run["rps"] * per_request)
            off, on_ = sum(rounds[False]) / len(rounds[False]), sum(rounds[True]) / len(rounds[True])
            ratios[door] = on_ / max(off, 0.1)
            print(f"9. {door}, metrics off:               {off:>9,.0f} events/s  "
                  f"(rounds: {', '.join(f'{r:,.0f}' for r in rounds[False])})")
            print(f"   {door}, metrics on, scraped 1/s:  {on_:>9,.0f} events/s  "
                  f"(rounds: {', '.join(f'{r:,.0f}' for r in rounds[True])})")
        scraper.stop.set()
        scraper.join()
        print(f"   {scraper.scrapes} scrapes of /metrics")
    return ratios


def main() -> None:
    print(f"machine: {platform.machine()}, {psutil.cpu_count()} cores, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}")
    with bench_stack() as stack:
        env = {"DATABASE_URL": stack.database_url, "TEMPORAL_ADDRESS": "127.0.0.1:1"}
        track_body = orjson.dumps(TRACK)
        batch_body = orjson.dumps({"batch": [{**TRACK, "type": "track"} for _ in range(100)]})
        key = [f"X-Write-Key: {stack.write_key}"]

        port = free_port()
        with serve(["-m", "bench.null_server", str(port)], port, {}):
            ceiling = load(f"http://127.0.0.1:{port}/v1/track", track_body, stack.tmp, seconds=5)
        print(f"1. generator ceiling (null server):       {ceiling['rps']:>9,.0f} req/s")

        port = free_port()
        with serve(["-m", "bench.baseline_app", str(port)], port, env):
            base = load(f"http://127.0.0.1:{port}/v1/track", track_body, stack.tmp, seconds=SECONDS)
        print(f"2. baseline (Quart, 1 INSERT/request):    {base['rps']:>9,.0f} events/s  p99 {base['p99_ms']} ms"
              f"  errors {base['errors']}")

        port = free_port()
        with serve(["-m", "web"], port, {**env, "HEADWATER_PORT": str(port)}) as api:
            url = f"http://127.0.0.1:{port}"
            track = load(f"{url}/v1/track", track_body, stack.tmp, headers=key, seconds=SECONDS)
            print(f"3. Headwater /v1/track, 64 connections:   {track['rps']:>9,.0f} events/s  p99 {track['p99_ms']} ms"
                  f"  errors {track['errors']}")
            paced = load(f"{url}/v1/track", track_body, stack.tmp, headers=key, seconds=SECONDS, rate=500)
            print(f"4. Headwater /v1/track at 500 req/s:       {paced['rps']:>9,.0f} req/s     p50 {paced['p50_ms']} ms"
                  f"  p99 {paced['p99_ms']} ms  errors {paced['errors']}")
            batch = load(f"{url}/v1/batch", batch_body, stack.tmp, headers=key, seconds=SECONDS, connections=16)
            events = batch["rps"] * 100
            print(f"5. Headwater /v1/batch, 100 per request:  {events:>9,.0f} events/s  p99 {batch['p99_ms']} ms"
                  f"  errors {batch['errors']}")
            # Contract off and on in rounds ordered off, on, on, off, twice (ABBA ABBA): the
            # throughput drifts as the tables grow and the VM's neighbours come and go; in this
            # order a steady drift falls on both sides alike, and eight short rounds average
            # out more of the rest than a few long ones.
            contract_body = orjson.dumps({"batch": [checkout_step(i) for i in range(100)]})
            contract_id = None
            plain_rps, checked_rps, errors = [], [], 0
            for with_contract in CONTRACT_ORDER:
                if with_contract and contract_id is None:
                    contract_id = stack.add_contract(
                        name="Checkout step", description=None, event_type="track", event_name="checkout_step",
                        schema_definition={"properties": CONTRACT_PROPERTIES}, enforcement_mode="warn",
                        undeclared_fields="allow")
                    time.sleep(1.5)  # the API's contract cache
                elif contract_id is not None:
                    stack.set_contract_status(contract_id, "active" if with_contract else "archived")
                    time.sleep(1.5)
                run = load(f"{url}/v1/batch", contract_body, stack.tmp, headers=key,
                           seconds=CONTRACT_ROUND_SECONDS, connections=16)
                (checked_rps if with_contract else plain_rps).append(run["rps"])
                errors += run["errors"]
            plain_mean = sum(plain_rps) / len(plain_rps)
            checked_mean = sum(checked_rps) / len(checked_rps)
            contract_ratio = checked_mean / max(plain_mean, 0.1)
            print(f"6. /v1/batch, 10 properties, no contract:  {plain_mean * 100:>9,.0f} events/s  "
                  f"(rounds: {', '.join(f'{r * 100:,.0f}' for r in plain_rps)})")
            print(f"   same with a warn contract, half violating:{checked_mean * 100:>8,.0f} events/s  "
                  f"(rounds: {', '.join(f'{r * 100:,.0f}' for r in checked_rps)})  errors {errors}")
            # Redaction on the ingest path: 100 audit events per request (each different, as
            # bench/redaction.py makes them) against the track batches of step 5.
            rng = random.Random(7)
            audit_body = orjson.dumps({"batch": [{"type": "audit", **typical(n, rng)} for n in range(100)]})
            track_rounds, audit_rounds = [], []
            for audit in (False, True, True, False):
                run = load(f"{url}/v1/batch", audit_body if audit else batch_body, stack.tmp, headers=key,
                           seconds=CONTRACT_ROUND_SECONDS, connections=16)
                (audit_rounds if audit else track_rounds).append(run["rps"] * 100)
                errors += run["errors"]
            track_mean, audit_mean = sum(track_rounds) / 2, sum(audit_rounds) / 2
            print(f"7. /v1/batch, track events:               {track_mean:>9,.0f} events/s  "
                  f"(rounds: {', '.join(f'{r:,.0f}' for r in track_rounds)})")
            print(f"   /v1/batch, audit events, redacted:     {audit_mean:>9,.0f} events/s  "
                  f"(rounds: {', '.join(f'{r:,.0f}' for r in audit_rounds)})  errors {errors}")
            rss = api.memory_info().rss / 2**20
        print(f"8. API process RSS at the end:            {rss:>9,.0f} MB")
        metrics_ratios = metrics_cost(stack, env, track_body, batch_body, key)

    ratio = track["rps"] / base["rps"]
    print()
    print(f"ratio /v1/track / baseline:   {ratio:.2f}x   (target >= 1.3)  {'ok' if ratio >= 1.3 else 'MISSED'}")
    print(f"p99 at 500 req/s:             {paced['p99_ms']} ms (target < 50)  {'ok' if paced['p99_ms'] < 50 else 'MISSED'}")
    print(f"/v1/batch events/s:           {events:,.0f}      (target >= 20,000)  {'ok' if events >= 20000 else 'MISSED'}")
    print(f"ratio /v1/batch / baseline:   {events / base['rps']:.1f}x")
    print(f"contract / no contract:       {contract_ratio:.2f}x   (target >= 0.85)  "
          f"{'ok' if contract_ratio >= 0.85 else 'MISSED'}")
    print(f"audit (redacted) / track:     {audit_mean / max(track_mean, 0.1):.2f}x")
    print(f"API RSS:                      {rss:.0f} MB     (target < 300)  {'ok' if rss < 300 else 'MISSED'}")
    for door, ratio_on in metrics_ratios.items():
        print(f"{door} metrics on / off:   {ratio_on:.2f}x   (target >= 0.95)  {'ok' if ratio_on >= 0.95 else 'MISSED'}")
    print(f"generator headroom:           {ceiling['rps'] / max(track['rps'], 1):.1f}x the fastest measured req/s")


if __name__ == "__main__":
    main()
