"""The migrations build exactly the schema the models describe."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import UTC, datetime

import asyncpg
import orjson
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from devstack.migrate import alembic_config
from devstack.postgres import drop_database, ensure_database
from models import Base
from settings import Settings


async def test_migrations_match_the_models(settings: Settings):
    engine = create_async_engine(settings.sqlalchemy_url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata))
    finally:
        await engine.dispose()
    assert differences == []


async def test_0010_moves_each_group_commits_violations_into_one_batch_and_back(postgres_server_url: str):
    name = f"headwater_migrate_{secrets.token_hex(4)}"
    await ensure_database(postgres_server_url, name)
    url = postgres_server_url.rpartition("/")[0] + "/" + name
    config = alembic_config(url)
    contract, other = uuid.uuid4(), uuid.uuid4()
    workspace, source = uuid.uuid4(), uuid.uuid4()
    first, second = datetime(2026, 11, 30, 12, tzinfo=UTC), datetime(2026, 11, 30, 13, tzinfo=UTC)
    # (contract, event id, path, occurred_at): two group commits for `contract`, one for `other`
    rows = [(contract, "evt_1", "/properties/a", first), (contract, "evt_1", "/properties/b", first),
            (other, None, "/traits/x", first), (contract, "evt_2", "/properties/a", second)]
    try:
        await asyncio.to_thread(command.upgrade, config, "0009")
        conn = await asyncpg.connect(url)
        try:
            for contract_id, event_id, path, occurred_at in rows:
                await conn.execute(
                    "INSERT INTO contract_violations (id, workspace_id, contract_id, event_id, event_type, event_name, "
                    "source_id, path, kind, message, action, occurred_at) "
                    "VALUES (gen_random_uuid(), $1, $2, $3, 'track', 'Order', $4, $5, 'type_mismatch', 'no', $6, $7)",
                    workspace, contract_id, event_id, source, path, "warned" if event_id else "blocked", occurred_at)
            before = [dict(r) for r in await conn.fetch("SELECT * FROM contract_violations ORDER BY seq")]

            await asyncio.to_thread(command.upgrade, config, "0010")
            batches = await conn.fetch("SELECT contract_id, occurred_at, violation_count, violations::text "
                                       "FROM contract_violation_batches ORDER BY seq")
            assert [(b["contract_id"], b["occurred_at"], b["violation_count"]) for b in batches] == [
                (contract, first, 2), (other, first, 1), (contract, second, 1)]
            items = orjson.loads(batches[0]["violations"])
            assert [(v[0], v[3]) for v in items] == [("evt_1", "/properties/a"), ("evt_1", "/properties/b")]
            assert items[0] == ["evt_1", "Order", str(source), "/properties/a", "type_mismatch", "no", "warned"]

            await asyncio.to_thread(command.downgrade, config, "0009")
            after = [dict(r) for r in await conn.fetch("SELECT * FROM contract_violations ORDER BY seq")]
            assert [{k: v for k, v in r.items() if k not in ("seq", "id")} for r in after] == [
                {k: v for k, v in r.items() if k not in ("seq", "id")} for r in before]
        finally:
            await conn.close()
    finally:
        await drop_database(postgres_server_url, name)
