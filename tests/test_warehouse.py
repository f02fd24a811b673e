"""The `postgres` destination, against a second database on the test Postgres: tables and
columns appear as events bring them, with the types their values say; long names cut without
colliding; a field whose type changes gets a column of its own; a batch loaded twice leaves no
duplicate; two rules load into one table at once; a permission error dead-letters with the
database's message; the DSN's password is never read back; a private host is refused."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
import pytest

from forwarding.delivery import Outcome, PrivateDestination, check_public
from forwarding.warehouse import WarehouseLoader, WarehousePools, identifier
from models.forwarding import Destination
from tests.conftest import WorkspaceKey


@pytest.fixture(scope="module")
async def warehouse(postgres_server_url):
    """A database of its own on the test server: the warehouse."""
    from devstack.postgres import drop_database, ensure_database

    name = f"warehouse_{secrets.token_hex(4)}"
    await ensure_database(postgres_server_url, name)
    base, _, _ = postgres_server_url.rpartition("/")
    yield f"{base}/{name}"
    await drop_database(postgres_server_url, name)


@pytest.fixture
async def source(client, workspace: WorkspaceKey) -> dict:
    response = await client.post(workspace.url("/event-keys"), json={"name": "w", "redact": "off"},
                                 headers=workspace.headers)
    return await response.get_json()


async def warehouse_rule(client, workspace: WorkspaceKey, dsn: str, **config) -> tuple[dict, dict]:
    destination = await client.post(workspace.url("/destinations"), headers=workspace.headers, json={
        "name": "Warehouse", "type": "postgres", "config": {"dsn": dsn, **config}})
    assert destination.status_code == 201, await destination.get_data()
    destination = await destination.get_json()
    rule = await client.post(workspace.url("/event-forwarding-rules"), headers=workspace.headers,
                             json={"name": "To the warehouse", "destination_id": destination["id"]})
    assert rule.status_code == 201, await rule.get_data()
    return destination, await rule.get_json()


async def send(client, source: dict, batch: list[dict]) -> list[str]:
    response = await client.post("/v1/batch", json={"batch": batch}, headers={"X-Write-Key": source["key"]})
    answer = await response.get_json()
    assert len(answer["ids"]) == len(batch), answer
    return answer["ids"]


async def eventually(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except (AssertionError, asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def columns(conn: asyncpg.Connection, schema: str, table: str) -> dict[str, str]:
    rows = await conn.fetch("SELECT column_name, data_type FROM information_schema.columns "
                            "WHERE table_schema = $1 AND table_name = $2", schema, table)
    return {row[0]: row[1] for row in rows}


async def test_events_become_rows_with_columns_of_their_types(client, workspace, source, warehouse):
    schema = f"s_{secrets.token_hex(3)}"
    await warehouse_rule(client, workspace, warehouse, schema=schema)
    ids = await send(client, source, [
        {"type": "track", "event": "Order Completed", "userId": "u1",
         "properties": {"total": 99.5, "count": 3, "paid": True, "shippedAt": "2026-12-01T10:00:00Z",
                        "items": [1, 2], "nested": {"a": {"b": "x"}}, "Some Key": "v", "user_id": "shadowed"},
         "context": {"page": {"url": "https://example.com/checkout"}, "ip": "203.0.113.9"}},
        {"type": "identify", "userId": "u1", "traits": {"plan": "pro", "seats": 5}},
        {"type": "page", "anonymousId": "a1", "name": "Home", "properties": {"path": "/"}},
        {"type": "audit", "action": "document.shared", "category": "access", "tenant_id": "acme",
         "actor": {"id": "alice", "type": "user"}, "target": {"id": "d1", "type": "doc"}, "metadata": {"via": "link"}},
    ])
    conn = await asyncpg.connect(warehouse)
    try:
        async def loaded():
            for table in ("order_completed", "identifies", "pages", "audits"):
                assert await conn.fetchval(f'SELECT count(*) FROM "{schema}"."{table}"') == 1, table

        await eventually(loaded)
        order = await columns(conn, schema, "order_completed")
        assert {name: order[name] for name in ("id", "received_at", "timestamp", "user_id", "total", "count", "paid",
                                                "shipped_at", "items", "nested_a_b", "some_key",
                                                "context_page_url", "context_ip", "body", "properties_user_id")} == {
            "id": "text", "received_at": "timestamp with time zone", "timestamp": "timestamp with time zone",
            "user_id": "text", "total": "double precision", "count": "bigint", "paid": "boolean",
            "shipped_at": "timestamp with time zone", "items": "jsonb", "nested_a_b": "text", "some_key": "text",
            "context_page_url": "text", "context_ip": "text", "body": "jsonb", "properties_user_id": "text"}
        row = await conn.fetchrow(f'SELECT * FROM "{schema}".order_completed')
        assert row["id"] == ids[0] and row["user_id"] == "u1" and row["total"] == 99.5 and row["count"] == 3
        assert row["paid"] is True and row["shipped_at"].isoformat() == "2026-12-01T10:00:00+00:00"
        assert orjson.loads(row["items"]) == [1, 2] and row["context_page_url"] == "https://example.com/checkout"
        assert row["properties_user_id"] == "shadowed"  # a property named like a common field keeps its prefix
        assert orjson.loads(row["body"])["properties"]["nested"] == {"a": {"b": "x"}}  # the whole event, too
        identify = await conn.fetchrow(f'SELECT plan, seats FROM "{schema}".identifies')
        assert identify["plan"] == "pro" and identify["seats"] == 5
        audit = await conn.fetchrow(f'SELECT action, category, actor_id, target_id, metadata_via, tenant_id '
                                    f'FROM "{schema}".audits')
        assert tuple(audit) == ("document.shared", "access", "alice", "d1", "link", "acme")
    finally:
        await conn.close()


async def test_a_changed_type_gets_its_own_column_and_long_names_never_meet(client, workspace, source, warehouse):
    schema = f"s_{secrets.token_hex(3)}"
    await warehouse_rule(client, workspace, warehouse, schema=schema, table_per="type")
    long_a, long_b = "x" * 70 + "_first", "x" * 70 + "_second"
    await send(client, source, [{"type": "track", "event": "Priced", "userId": "u", "properties": {"price": 10}}])
    conn = await asyncpg.connect(warehouse)
    try:
        async def first():
            assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".tracks') == 1

        await eventually(first)
        await send(client, source, [
            {"type": "track", "event": "Priced", "userId": "u", "properties": {"price": "cheap", long_a: 1, long_b: 2}},
            {"type": "track", "event": "Priced", "userId": "u", "properties": {"price": 9.5}}])

        async def rest():
            assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".tracks') == 3

        await eventually(rest)
        found = await columns(conn, schema, "tracks")
        assert found["price"] == "bigint" and found["price_text"] == "text" and found["price_float"] == "double precision"
        assert sorted(await conn.fetchval(f'SELECT array_agg(price_text) FROM "{schema}".tracks '
                                          'WHERE price_text IS NOT NULL')) == ["cheap"]
        a, b = identifier(long_a), identifier(long_b)
        assert a != b and len(a.encode()) <= 63 and len(b.encode()) <= 63 and {a, b} <= set(found)
    finally:
        await conn.close()


async def test_a_batch_loaded_twice_leaves_no_duplicate(warehouse):
    pools = WarehousePools()
    schema = f"s_{secrets.token_hex(3)}"
    loader = WarehouseLoader(pools, {"dsn": warehouse, "schema": schema, "table_per": "type"})
    bodies = [orjson.dumps({"id": f"evt_{i:026d}", "type": "track", "event": "Twice", "user_id": "u",
                            "properties": {"n": i}}).decode() for i in range(300)]
    ids = [f"evt_{i:026d}" for i in range(300)]
    try:
        for _ in range(2):  # a worker killed after the load, before the outcome was recorded: sent again
            answers = await asyncio.gather(*(loader.send(d) for d in loader.group(ids, bodies, ids)))
            assert {a.outcome for a in answers} == {Outcome.DELIVERED}
        conn = await asyncpg.connect(warehouse)
        assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".tracks') == 300
        await conn.close()
    finally:
        await pools.close()


async def test_two_rules_load_into_one_table_at_once(client, workspace, source, warehouse):
    schema = f"s_{secrets.token_hex(3)}"
    rules = [(await warehouse_rule(client, workspace, warehouse, schema=schema, table_per="type"))[1] for _ in range(2)]
    batch = [{"type": "track", "event": "Shared", "userId": f"u{i}", "properties": {f"p{i % 7}": i}} for i in range(400)]
    await send(client, source, batch)

    async def both_delivered():
        for rule in rules:
            state = await (await client.get(workspace.url(f"/event-forwarding-rules/{rule['id']}"),
                                            headers=workspace.headers)).get_json()
            assert state["stats"]["delivered"] == 400 and state["stats"]["dead_lettered"] == 0, state["stats"]

    await eventually(both_delivered, timeout=60)
    conn = await asyncpg.connect(warehouse)
    assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".tracks') == 400
    await conn.close()


async def test_a_permission_error_dead_letters_with_the_database_message(client, workspace, source, warehouse):
    role = f"limited_{secrets.token_hex(3)}"
    conn = await asyncpg.connect(warehouse)
    await conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'limited'")  # may connect, may not create schemas
    await conn.close()
    parts = urlsplit(warehouse)
    dsn = urlunsplit((parts.scheme, f"{role}:limited@{parts.hostname}:{parts.port}", parts.path, "", ""))
    _, rule = await warehouse_rule(client, workspace, dsn, schema="forbidden", max_attempts=1, max_retry_age_seconds=0)
    event_id = (await send(client, source, [{"type": "track", "event": "Denied", "userId": "u"}]))[0]

    async def dead():
        page = await (await client.get(workspace.url(f"/event-forwarding-rules/{rule['id']}/dead-letters"),
                                       headers=workspace.headers)).get_json()
        assert [d["event_id"] for d in page["data"]] == [event_id], page
        return page["data"][0]

    letter = await eventually(dead)
    assert "permission denied" in letter["error"] and "42501" in letter["error"], letter


async def test_the_password_is_never_read_back_and_private_hosts_are_refused(client, workspace, warehouse):
    parts = urlsplit(warehouse)
    dsn = urlunsplit((parts.scheme, f"{parts.username}:s3cret@{parts.hostname}:{parts.port}", parts.path, "", ""))
    destination, _ = await warehouse_rule(client, workspace, dsn)
    assert "s3cret" not in orjson.dumps(destination).decode() and ":***@" in destination["config"]["dsn"]
    listed = await (await client.get(workspace.url("/destinations"), headers=workspace.headers)).get_data()
    assert b"s3cret" not in listed
    # The config as read, sent back with a change: the password stays (the masked form is not stored).
    changed = await client.put(workspace.url(f"/destinations/{destination['id']}"), headers=workspace.headers,
                               json={"config": {**destination["config"], "table_per": "type"}})
    assert changed.status_code == 200, await changed.get_data()
    assert destination["config"]["schema"] == "headwater"
    with pytest.raises(PrivateDestination):
        await check_public(WarehouseLoader(WarehousePools(), {"dsn": "postgresql://u:p@127.0.0.1:5432/db"}).url)
    bad = await client.post(workspace.url("/destinations"), headers=workspace.headers, json={
        "name": "x", "type": "postgres", "config": {"dsn": "mysql://u@h/db"}})
    assert bad.status_code == 422


async def test_the_stored_dsn_keeps_its_password(client, workspace, warehouse, sessions):
    parts = urlsplit(warehouse)
    dsn = urlunsplit((parts.scheme, f"{parts.username}:kept@{parts.hostname}:{parts.port}", parts.path, "", ""))
    destination, _ = await warehouse_rule(client, workspace, dsn)
    await client.put(workspace.url(f"/destinations/{destination['id']}"), headers=workspace.headers,
                     json={"config": {**destination["config"], "table_per": "type"}})
    async with sessions() as session:
        stored = await session.get(Destination, uuid.UUID(destination["id"]))
    assert stored.config["dsn"] == dsn and stored.config["table_per"] == "type"


async def test_through_the_engine_retries_then_transformed_events_land(client, workspace, source, warehouse,
                                                                        postgres_server_url):
    """A warehouse that is down holds the rule (retries, no dead letter); pointed at a live one,
    the events arrive, through the rule's transformation."""
    schema = f"s_{secrets.token_hex(3)}"
    parts = urlsplit(warehouse)
    closed = urlunsplit((parts.scheme, f"{parts.username}@127.0.0.1:1", parts.path, "", ""))  # nothing listens
    transformation = await (await client.post(workspace.url("/event-transformations"), headers=workspace.headers, json={
        "name": "enrich", "status": "active",
        "source_code": "function transform(e) { e.properties.enriched = true; return e; }"})).get_json()
    destination = await (await client.post(workspace.url("/destinations"), headers=workspace.headers, json={
        "name": "Down", "type": "postgres", "config": {"dsn": closed, "schema": schema, "table_per": "type",
                                                       "timeout_ms": 1000}})).get_json()
    rule = await (await client.post(workspace.url("/event-forwarding-rules"), headers=workspace.headers, json={
        "name": "r", "destination_id": destination["id"], "transformation_id": transformation["id"]})).get_json()
    await send(client, source, [{"type": "track", "event": "Held", "userId": "u", "properties": {"n": 1}}])

    async def held():
        state = await (await client.get(workspace.url(f"/event-forwarding-rules/{rule['id']}"),
                                        headers=workspace.headers)).get_json()
        assert state["stats"]["last_error"] and "postgres" in state["stats"]["last_error"], state["stats"]
        assert state["stats"]["dead_lettered"] == 0 and state["stats"]["delivered"] == 0

    await eventually(held)
    moved = await client.put(workspace.url(f"/destinations/{destination['id']}"), headers=workspace.headers,
                             json={"config": {"dsn": warehouse}})
    assert moved.status_code == 200, await moved.get_data()
    conn = await asyncpg.connect(warehouse)
    try:
        async def landed():
            row = await conn.fetchrow(f'SELECT n, enriched FROM "{schema}".tracks')
            assert row is not None and row["n"] == 1 and row["enriched"] is True

        await eventually(landed, timeout=60)
    finally:
        await conn.close()
