"""Postgres stops mid-test: requests answer 503 (never 500), nothing acknowledged is lost,
nothing refused is half-written, and ingestion recovers when Postgres is back."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from devstack.migrate import upgrade
from devstack.postgres import EmbeddedPostgres, ensure_database
from devstack.processes import free_port
from models.db import create_engine, session_factory
from models.events import Event
from models.sources import SourceRepository
from models.workspaces import WorkspaceRepository
from web import create_app


async def test_failed_commit_answers_503_and_loses_nothing_acknowledged(settings, tmp_path):
    server = EmbeddedPostgres(tmp_path / "pg", free_port())
    await asyncio.to_thread(server.start)
    try:
        await ensure_database(server.url(), "headwater")
        url = server.url("headwater")
        await asyncio.to_thread(upgrade, url)
        own = settings.model_copy(update={"database_url": url})
        engine = create_engine(own, pool_size=1)
        async with session_factory(engine)() as session, session.begin():
            workspace = await WorkspaceRepository(session).create("fragile")
            key = (await SourceRepository(session).create(workspace.id, "src", None)).key
        await engine.dispose()

        async with create_app(own).test_app() as app:
            client = app.test_client()

            async def send(i: int):
                return await client.post("/v1/track", json={"event": f"e{i}", "userId": "u", "messageId": f"m{i}"},
                                         headers={"X-Write-Key": key})

            acknowledged = []
            for response in await asyncio.gather(*(send(i) for i in range(50))):
                assert response.status_code == 200
                acknowledged.append((await response.get_json())["id"])

            await asyncio.to_thread(server.stop)
            refused = await asyncio.gather(*(send(i) for i in range(50, 60)))
            for response in refused:
                body = await response.get_json()
                assert response.status_code == 503, body
                assert body["error"]["code"] in ("commit_failed", "storage_unavailable")
                assert response.headers["Retry-After"]
            await asyncio.sleep(1.1)  # past the write-key cache: the lookup itself now fails
            response = await send(60)
            assert response.status_code == 503

            await asyncio.to_thread(server.start)
            recovered = await send(61)
            assert recovered.status_code == 200
            acknowledged.append((await recovered.get_json())["id"])

        engine = create_engine(own, pool_size=1)
        async with session_factory(engine)() as session:
            ids = set(await session.scalars(select(Event.id).where(Event.workspace_id == workspace.id)))
            refused_rows = await session.scalar(select(func.count()).select_from(Event).where(
                Event.message_id.in_([f"m{i}" for i in range(50, 61)])))
        await engine.dispose()
        assert ids == set(acknowledged)
        assert refused_rows == 0
    finally:
        await asyncio.to_thread(server.stop)
