"""Transformation throughput: the API reference's example over 100,000 events through the
function the forwarding activity uses (`SandboxProcess.transform`: JSON to the sandbox process,
quickjs, JSON back, in batches of 1,000), against a baseline of the same JSON round trip with no
JavaScript (each event to JSON text and back), in the same run. Also the engine alone on one
core (`transform_events` in this process), which is what the 20,000 events/s target is about."""

from __future__ import annotations

import asyncio
import platform
import time

import orjson

from activities.sandbox import SandboxLimits, transform_events
from activities.sandbox_process import SandboxProcess

REFERENCE = ("function transform(event) {\n if (event.properties.total > 100) {\n"
             " event.properties.tier = 'high_value';\n }\n return event;\n}")
EVENTS = 100_000
BATCH = 1_000
TARGET = 20_000


def events() -> list[dict]:
    return [{
        "id": f"evt_01JD{i:022d}", "type": "track", "event": "purchase_completed", "user_id": f"user_{i % 977}",
        "anonymous_id": None, "message_id": f"m-{i}", "source_id": "2b0f5a4e-8a64-4a5e-9a77-3c6f7c0b8d11",
        "properties": {"total": i % 200, "currency": "USD", "items": i % 7},
        "context": {"ip": "203.0.113.9", "library": {"name": "analytics-python", "version": "2.3.4"}},
        "timestamp": "2026-11-22T10:00:00.000Z", "received_at": "2026-11-22T10:00:00.012Z",
    } for i in range(EVENTS)]


def baseline(batch: list[dict]) -> None:
    for event in batch:
        orjson.loads(orjson.dumps(event).decode())


async def main_async() -> None:
    data = events()
    meta = {"workspace_id": "w", "rule_id": "r"}

    started = time.perf_counter()
    baseline(data)
    baseline_rate = EVENTS / (time.perf_counter() - started)

    meta_json = orjson.dumps({**meta, "source_id": data[0]["source_id"]}).decode()
    jsons = [orjson.dumps(event).decode() for event in data]
    started = time.perf_counter()
    outcomes = transform_events(("bench", 1), REFERENCE, jsons, [meta_json] * EVENTS, SandboxLimits())
    engine_rate = EVENTS / (time.perf_counter() - started)
    assert sum(o.error is not None for o in outcomes) == 0

    sandbox = SandboxProcess()
    try:
        await sandbox.transform(("bench", 1), REFERENCE, data[:10], meta)  # start the child, compile
        started = time.perf_counter()
        tiers = 0
        for offset in range(0, EVENTS, BATCH):
            batch, _ = await sandbox.transform(("bench", 1), REFERENCE, data[offset:offset + BATCH], meta)
            tiers += sum('"tier":"high_value"' in o.event_jsons[0] for o in batch)
        activity_rate = EVENTS / (time.perf_counter() - started)
    finally:
        sandbox.close()
    assert tiers == sum(e["properties"]["total"] > 100 for e in data)

    print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}")
    print(f"baseline (JSON round trip, no JavaScript):       {baseline_rate:>10,.0f} events/s")
    print(f"engine on one core (transform_events):           {engine_rate:>10,.0f} events/s "
          f"({'ok' if engine_rate >= TARGET else 'MISSED'}: target {TARGET:,})")
    print(f"activity path (sandbox process, batches of {BATCH:,}): {activity_rate:>10,.0f} events/s "
          f"({'ok' if activity_rate >= TARGET else 'MISSED'}: target {TARGET:,})")
    print(f"ratio activity path / baseline:                  {activity_rate / baseline_rate:.3f}")


def main() -> None:
    asyncio.run(main_async())


if __name__ == "__main__":
    main()
