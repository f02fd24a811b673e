"""The audit log: how fast events are sealed, what the log costs on disk, and how fast its proofs
are read at 10 million leaves.

1. sealing: SEAL_EVENTS track events stored through `/v1/batch`, then sealed as the
   `audit-seal` schedule's activity seals them (AuditLedger.seal, 50,000 leaves a transaction):
   events/s (target ≥ 50,000). Baseline, same run: reading the same events and hashing their
   export lines, storing nothing (the floor of any sealing).
2. storage: the audit tables' bytes per sealed event, beside the events table's.
3. reads at 10,000,000 leaves: a log built directly in the tables (synthetic leaves — the tree
   holds only hashes and event ids, so ten million events need not be ingested to time its
   reads; a few real event rows sit at known leaves for `/audit/proof`), then `tree-head`,
   `proof` for leaves across the tree, and `consistency` between sizes, through the API:
   p50/p99 (target < 50 ms each);
4. retention beside ingest: RETAIN_EVENTS events received ten days ago (stored directly) in a
   workspace keeping 7 days, sealed; then `/v1/batch` into another workspace for ROUND seconds
   alone and ROUND seconds while retention deletes them: events/s deleted, and the ingest
   figure during it against alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import platform
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import orjson

from audit import merkle
from audit.log import AuditLedger
from audit.retention import Retention
from bench.stack import bench_stack, load, new_tenant, pct, serve
from devstack.processes import free_port
from models.audit import CHUNK_LEAVES, CHUNK_LEVEL, AuditRepository
from models.db import create_engine, session_factory
from models.events import export_line_of
from models.ids import first_event_id_at
from settings import Settings

SEAL_EVENTS = 200_000
RETAIN_EVENTS = 200_000
ROUND = 8
BIG = 10_000_000
READS = 200

TRACK = {"type": "track", "event": "Order Completed", "userId": "user-123",
         "properties": {"order_id": "ORD-456", "total": 99.99, "currency": "USD", "items": ["SKU-001", "SKU-002"]},
         "context": {"ip": "203.0.113.1", "user_agent": "Mozilla/5.0"}}


async def ingest(base: str, write_key: str, n: int) -> None:
    async with httpx.AsyncClient(base_url=base, headers={"X-Write-Key": write_key}, timeout=60) as http:
        for _ in range(n // 4000):
            answers = await asyncio.gather(*(http.post("/v1/batch", json={"batch": [TRACK] * 500}) for _ in range(8)))
            assert all(a.status_code == 200 for a in answers), answers[0].text


async def hash_only(dsn: str, workspace_id: uuid.UUID) -> float:
    """Baseline: read the events in commit order and hash their lines; store nothing."""
    conn = await asyncpg.connect(dsn)
    started = time.perf_counter()
    after, n = (0, ""), 0
    while True:
        rows = await conn.fetch("SELECT id, commit_xid, body::text AS body FROM events WHERE workspace_id = $1 "
                                "AND (commit_xid, id) > ($2, $3) ORDER BY commit_xid, id LIMIT 50000",
                                workspace_id, *after)
        if not rows:
            break
        frontier = merkle.Frontier.empty()
        for row in rows:
            frontier.append(merkle.leaf_hash(export_line_of(row["body"])))
        n += len(rows)
        after = (rows[-1]["commit_xid"], rows[-1]["id"])
    elapsed = time.perf_counter() - started
    await conn.close()
    return n / elapsed


async def seal(database_url: str, workspace_id: uuid.UUID) -> tuple[float, int]:
    engine = create_engine(Settings(database_url=database_url), pool_size=2)
    ledger = AuditLedger(session_factory(engine))
    started = time.perf_counter()
    total = 0
    while added := await ledger.seal(workspace_id):
        total += added
    elapsed = time.perf_counter() - started
    await engine.dispose()
    return total / elapsed, total


async def storage(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    sizes = {table: await conn.fetchval("SELECT pg_total_relation_size($1)", table)
             for table in ("events", "audit_chunks", "audit_nodes", "audit_tree_heads", "audit_logs")}
    await conn.close()
    return sizes


async def build_big_log(dsn: str, database_url: str, workspace_id: uuid.UUID) -> list[tuple[int, str]]:
    """A log of BIG synthetic leaves written straight into the tables, with real event rows at
    a few leaves; those (leaf, event id)."""
    engine = create_engine(Settings(database_url=database_url), pool_size=2)
    ledger = AuditLedger(session_factory(engine))
    await ledger.public_key(workspace_id)  # the log row and its keys
    conn = await asyncpg.connect(dsn)
    frontier = merkle.Frontier.empty()
    chosen = sorted([*random.Random(3).sample(range(BIG), 20), 0, BIG - 1])
    chosen_set = set(chosen)
    events = []
    chunk_rows = []
    for chunk_index in range(BIG // CHUNK_LEAVES + 1):
        first = chunk_index * CHUNK_LEAVES
        count = min(CHUNK_LEAVES, BIG - first)
        if count <= 0:
            break
        ids = [f"evt_{first + i:016d}" for i in range(count)]
        hashes = [hashlib.sha256(b"\x00leaf %d" % (first + i)).digest() for i in range(count)]
        for value in hashes:
            frontier.append(value, keep_from_level=CHUNK_LEVEL)
        chunk_rows.append((workspace_id, chunk_index, b"".join(hashes), ids, chunk_index + 1, ids[-1]))
        events += [(ids[i], workspace_id, chunk_index + 1) for i in range(count) if first + i in chosen_set]
        if len(chunk_rows) == 2000:
            await conn.copy_records_to_table("audit_chunks", records=chunk_rows, columns=[
                "workspace_id", "chunk_index", "leaf_hashes", "event_ids", "last_xid", "last_id"])
            chunk_rows = []
    if chunk_rows:
        await conn.copy_records_to_table("audit_chunks", records=chunk_rows, columns=[
            "workspace_id", "chunk_index", "leaf_hashes", "event_ids", "last_xid", "last_id"])
    await conn.copy_records_to_table("audit_nodes", records=[
        (workspace_id, level, index, value) for level, index, value in frontier.completed],
        columns=["workspace_id", "level", "index", "hash"])
    for event_id, workspace, xid in events:
        await conn.execute("INSERT INTO events (id, workspace_id, type, timestamp, received_at, body, commit_xid) "
                           "VALUES ($1, $2, 'track', now(), now(), '{}'::jsonb, $3)", event_id, workspace, xid)
    await conn.execute("UPDATE audit_logs SET tree_size = $2, frontier = $3 WHERE workspace_id = $1",
                       workspace_id, BIG, b"".join(frontier.hashes))
    await conn.close()
    async with ledger.sessions() as session, session.begin():  # sign the big tree's head, as a seal would
        audit_log = await AuditRepository(session).log(workspace_id)
        assert audit_log is not None
        await ledger._sign(session, audit_log, frontier.root())
    await engine.dispose()
    return [(leaf, f"evt_{leaf:016d}") for leaf in chosen]


async def time_reads(base: str, tenant, chosen: list[tuple[int, str]]) -> dict[str, list[float]]:
    path = f"/api/v1/workspaces/{tenant.workspace_id}/audit"
    timings: dict[str, list[float]] = {"tree-head": [], "proof": [], "consistency": []}
    rng = random.Random(5)
    async with httpx.AsyncClient(base_url=base, headers=tenant.headers, timeout=30) as http:
        for i in range(READS):
            leaf, event_id = chosen[i % len(chosen)]
            first = rng.randrange(1, BIG)
            for name, url in (("tree-head", f"{path}/tree-head"),
                              ("proof", f"{path}/proof?event_id={event_id}"),
                              ("consistency", f"{path}/consistency?first={first}&second={BIG}")):
                started = time.perf_counter()
                response = await http.get(url)
                timings[name].append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.text
                if name == "proof":
                    assert response.json()["leaf_index"] == leaf
    return timings


async def old_backlog(dsn: str, database_url: str, workspace_id: uuid.UUID) -> None:
    """RETAIN_EVENTS track events received ten days ago, stored directly and sealed."""
    at = datetime.now(UTC) - timedelta(days=10)
    prefix = first_event_id_at(at)[:14]
    conn = await asyncpg.connect(dsn)
    body = orjson.dumps({**TRACK, "name": TRACK["event"], "received_at": at.isoformat()}).decode()
    await conn.copy_records_to_table("events", records=[
        (f"{prefix}{i:016d}", workspace_id, "track", "Order Completed", "user-123", at, at, body)
        for i in range(RETAIN_EVENTS)], columns=["id", "workspace_id", "type", "name", "user_id", "timestamp",
                                                 "received_at", "body"])
    await conn.execute("UPDATE workspaces SET retention_days = 7 WHERE id = $1", workspace_id)
    await conn.close()
    await seal(database_url, workspace_id)


def retention_beside_ingest(stack, base: str) -> tuple[float, float, float]:
    """(events/s deleted, ingest events/s alone, ingest events/s while deleting)."""
    key = [f"X-Write-Key: {stack.write_key}"]
    body = orjson.dumps({"batch": [TRACK] * 100})
    alone = load(f"{base}/v1/batch", body, stack.tmp, headers=key, seconds=ROUND, connections=16)
    outcome: dict[str, float] = {}

    async def apply() -> int:
        engine = create_engine(Settings(database_url=stack.database_url), pool_size=2)
        _, deleted = await Retention(session_factory(engine)).apply(max_batches=10_000)
        await engine.dispose()
        return deleted

    def delete() -> None:
        started = time.perf_counter()
        outcome["deleted"] = asyncio.run(apply())
        outcome["seconds"] = time.perf_counter() - started
        outcome["rate"] = outcome["deleted"] / outcome["seconds"]

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(delete)
        during = load(f"{base}/v1/batch", body, stack.tmp, headers=key, seconds=ROUND, connections=16)
        running.result()
    assert outcome["deleted"] == RETAIN_EVENTS, outcome
    assert not alone["errors"] and not during["errors"], (alone, during)
    print(f"   (retention took {outcome['seconds']:.1f} s of the {ROUND} s round; no ingest request failed)")
    return outcome["rate"], alone["rps"] * 100, during["rps"] * 100


def main() -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with bench_stack() as stack:
        dsn = stack.database_url.replace("+asyncpg", "")
        port = free_port()
        env = {"DATABASE_URL": stack.database_url, "TEMPORAL_ADDRESS": "127.0.0.1:1", "HEADWATER_PORT": str(port),
               "HEADWATER_LOG_LEVEL": "WARNING"}
        with serve(["-m", "web"], port, env):
            base = f"http://127.0.0.1:{port}"
            tenant = asyncio.run(new_tenant(stack.database_url, "audit-seal"))
            asyncio.run(ingest(base, tenant.write_key, SEAL_EVENTS))
            baseline = asyncio.run(hash_only(dsn, tenant.workspace_id))
            before = asyncio.run(storage(dsn))
            rate, sealed = asyncio.run(seal(stack.database_url, tenant.workspace_id))
            after = asyncio.run(storage(dsn))
            audit_bytes = sum(after[t] - before[t] for t in ("audit_chunks", "audit_nodes", "audit_tree_heads",
                                                             "audit_logs"))
            print(f"1. sealed {sealed:,} events at {rate:,.0f} events/s; reading and hashing them alone: "
                  f"{baseline:,.0f} events/s")
            print(f"2. storage: {audit_bytes / sealed:,.1f} bytes per sealed event in the audit tables "
                  f"(the events table: {after['events'] / sealed:,.0f} bytes per event)")

            big = asyncio.run(new_tenant(stack.database_url, "audit-big"))
            started = time.perf_counter()
            chosen = asyncio.run(build_big_log(dsn, stack.database_url, big.workspace_id))
            print(f"   (built a log of {BIG:,} synthetic leaves in {time.perf_counter() - started:,.0f} s)")
            timings = asyncio.run(time_reads(base, big, chosen))
            for name, values in timings.items():
                print(f"3. {name} at {BIG:,} leaves: p50 {pct(values, 0.5):.1f} ms, p99 {pct(values, 0.99):.1f} ms "
                      f"({len(values)} requests)")

            old = asyncio.run(new_tenant(stack.database_url, "audit-retention"))
            asyncio.run(old_backlog(dsn, stack.database_url, old.workspace_id))
            deleted_rate, alone, during = retention_beside_ingest(stack, base)
            print(f"4. retention deleted {RETAIN_EVENTS:,} events at {deleted_rate:,.0f} events/s; /v1/batch alone "
                  f"{alone:,.0f} events/s, while it deleted {during:,.0f} events/s")
    print()
    print(f"sealing:        {rate:,.0f} events/s  (target >= 50,000)  {'ok' if rate >= 50_000 else 'MISSED'}; "
          f"{rate / baseline:.2f}x reading and hashing alone")
    print(f"retention:      {deleted_rate:,.0f} events/s deleted; ingest beside it {during / alone:.2f}x alone")
    for name, values in timings.items():
        p99 = pct(values, 0.99)
        print(f"{name + ':':<15} p99 {p99:.1f} ms at 10 M leaves  (target < 50)  {'ok' if p99 < 50 else 'MISSED'}")


if __name__ == "__main__":
    main()
