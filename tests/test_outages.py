"""Outages answer 503 with Retry-After on every route, never 500: here a real Postgres that
refuses connections as one does while it starts up or recovers (SQLSTATE 57P03)."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from devstack.postgres import EmbeddedPostgres
from devstack.processes import free_port
from tests.conftest import ADMIN_TOKEN, ApiProcess


@pytest.fixture(scope="module")
def refusing_postgres(tmp_path_factory):
    """A Postgres in standby without hot standby: it runs, listens, and answers every connection
    with "the database system is not yet accepting connections", as a server does while it
    starts up or replays WAL after a crash."""
    server = EmbeddedPostgres(tmp_path_factory.mktemp("standby") / "data", free_port())
    server.start()
    server.stop()
    (server.pgdata / "standby.signal").touch()
    with open(server.pgdata / "postgresql.conf", "a") as conf:
        conf.write("\nhot_standby = off\n")
    server.start(until_queries=False)
    yield server
    server.stop()


async def test_a_postgres_that_is_starting_up_answers_503_on_every_route(settings, worker, refusing_postgres,
                                                                       tmp_path):
    with pytest.raises(asyncpg.CannotConnectNowError):
        await asyncpg.connect(refusing_postgres.url(), timeout=5)
    api = ApiProcess(settings, tmp_path, DATABASE_URL=refusing_postgres.url("headwater"))
    try:
        async with api.client() as http:
            workspace = uuid.uuid4()
            master = {"Authorization": "Bearer mk_" + "x" * 40}
            calls = [
                ("POST", "/v1/track", {"event": "e", "userId": "u"}, {"X-Write-Key": "wk_any"}),
                ("POST", "/v1/batch", {"batch": [{"type": "track", "event": "e", "userId": "u"}]},
                 {"X-Write-Key": "wk_any"}),
                ("POST", f"/api/v1/streams/{uuid.uuid4()}/events",
                 {"action": "user.created", "category": "mutation", "actor": {"id": "u", "type": "user"},
                  "tenant_id": "t"}, {}),
                ("GET", f"/api/v1/streams/{uuid.uuid4()}/info", None, {}),
                ("POST", "/api/v1/streams/claim", {"claim_token": str(uuid.uuid4())}, master),
                ("POST", "/api/v1/workspaces", {"name": "w"}, {"Authorization": f"Bearer {ADMIN_TOKEN}"}),
                ("GET", f"/api/v1/workspaces/{workspace}/events", None, master),
                ("GET", f"/api/v1/workspaces/{workspace}/event-forwarding-rules", None, master),
                ("GET", f"/api/v1/workspaces/{workspace}/events/live", None, master),
            ]
            for method, path, body, headers in calls:
                response = await http.request(method, path, json=body, headers=headers)
                assert response.status_code == 503, (path, response.text)
                assert response.json()["error"]["code"] == "storage_unavailable", path
                assert int(response.headers["Retry-After"]) >= 1, path
            ready = await http.get("/readyz")
            assert ready.status_code == 503
        log = api.log_path.read_text()
        assert "Traceback" not in log and "unhandled error" not in log
    finally:
        api.stop()
