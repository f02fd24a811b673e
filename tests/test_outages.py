"""Outages: a real Postgres that refuses connections as one does while it starts up (57P03)
gets 503 with Retry-After on every route, never 500; a real Temporal dev server frozen, then
stopped, then back: management calls answer within 2 s, say what they saved, and repeat
harmlessly with an Idempotency-Key."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import asyncpg
import pytest
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.service import RPCError

from devstack.migrate import upgrade
from devstack.postgres import EmbeddedPostgres, drop_database, ensure_database
from devstack.processes import free_port, stop_process
from devstack.temporal import start_dev_server
from models.db import create_engine, session_factory
from tests.conftest import ADMIN_TOKEN, ApiProcess, make_workspace
from tests.sinks import Sink
from web import create_app
from worker import build_worker


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


# --- Temporal frozen or down: management calls answer within 2 s, and say what was saved -----

@pytest.fixture
async def own_stack(settings, postgres_server_url, tmp_path):
    """A database and a Temporal dev server of this test's own, so it may freeze and stop them
    (and its reconciler sees only its own rules)."""
    name = f"headwater_outage_{uuid.uuid4().hex[:8]}"
    await ensure_database(postgres_server_url, name)
    url = postgres_server_url.rpartition("/")[0] + f"/{name}"
    await asyncio.to_thread(upgrade, url)
    port = free_port()
    temporal = TemporalServer(port, tmp_path / "temporal.log")
    temporal.start()
    own = settings.model_copy(update={"database_url": url, "temporal_address": f"127.0.0.1:{port}",
                                      "task_queue": f"outage-{port}"})
    engine = create_engine(own, pool_size=2)
    try:
        yield own, session_factory(engine), temporal
    finally:
        temporal.stop()
        await engine.dispose()
        await drop_database(postgres_server_url, name)


class TemporalServer:
    def __init__(self, port: int, log_file) -> None:
        self.port, self.log_file, self.process = port, log_file, None

    def start(self) -> None:
        self.process = start_dev_server(None, self.port, None, self.log_file)

    def freeze(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None:
            self.thaw()
            stop_process(self.process)


async def serving(target: str, within: float = 30) -> Client:
    """A client once the restarted dev server serves: its port opens a moment before its
    WorkflowService is registered (an RPC then fails with UNIMPLEMENTED) and before its frontend
    says it is healthy (connecting fails: "Frontend is not healthy yet"), both seen on a loaded
    machine. Wait for the service itself."""
    deadline = time.monotonic() + within
    while True:
        try:
            client = await Client.connect(target)
            await client.workflow_service.get_system_info(GetSystemInfoRequest())
            return client
        except (RPCError, RuntimeError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def timed(call):
    started = time.monotonic()
    response = await call
    return response, time.monotonic() - started


async def test_management_calls_answer_within_2s_whatever_temporal_does(own_stack):
    own, sessions, temporal = own_stack
    workspace = await make_workspace(sessions)
    sink = await Sink().start()
    async with create_app(own).test_app() as app:
        client = app.test_client()
        h = workspace.headers
        source = await (await client.post(workspace.url("/event-keys"), json={"name": "s"}, headers=h)).get_json()
        destination = await (await client.post(workspace.url("/destinations"), headers=h, json={
            "name": "Sink", "type": "webhook", "config": {"url": sink.url}})).get_json()
        rule_body = {"name": "first", "destination_id": destination["id"]}
        response = await client.post(workspace.url("/event-forwarding-rules"), json=rule_body, headers=h)
        assert response.status_code == 201 and (await response.get_json())["workflow"] == "running"

        for outage in ("frozen", "down"):
            if outage == "frozen":
                temporal.freeze()  # the port stays open; nothing answers
            else:
                temporal.stop()  # connections refused
            name = f"made while Temporal is {outage}"
            create = client.post(workspace.url("/event-forwarding-rules"), headers={**h, "Idempotency-Key": outage},
                                 json={"name": name, "destination_id": destination["id"]})
            response, took = await timed(create)
            assert response.status_code == 201 and took < 2.0, (outage, took)
            rule = await response.get_json()
            assert rule["workflow"] == "pending" and rule["enabled"]
            # The client's retry gets the same answer and makes no second rule.
            again, took = await timed(client.post(workspace.url("/event-forwarding-rules"), json={
                "name": name, "destination_id": destination["id"]}, headers={**h, "Idempotency-Key": outage}))
            assert again.status_code == 201 and took < 2.0
            assert again.headers["Idempotent-Replayed"] == "true"
            assert (await again.get_json())["id"] == rule["id"]
            listed = await (await client.get(workspace.url("/event-forwarding-rules"), headers=h)).get_json()
            assert [r["name"] for r in listed["data"]].count(name) == 1
            # Disable and enable: saved, the workflow follows later.
            for enabled in (False, True):
                response, took = await timed(client.put(workspace.url(f"/event-forwarding-rules/{rule['id']}"),
                                                        json={"enabled": enabled}, headers=h))
                assert response.status_code == 200 and took < 2.0
                assert (await response.get_json())["workflow"] == "pending"
            # Replay and redrive save nothing: 503, quickly.
            for path, body in (("/replay", {"since": "2026-01-01T00:00:00Z"}), ("/dead-letters/redrive", {})):
                response, took = await timed(client.post(workspace.url(f"/event-forwarding-rules/{rule['id']}{path}"),
                                                         json=body, headers=h))
                assert response.status_code == 503 and took < 2.0, (path, took)
                assert (await response.get_json())["error"]["code"] == "temporal_unavailable"
                assert response.headers["Retry-After"]
            response, took = await timed(client.post("/api/v1/streams/claim", json={"claim_token": str(uuid.uuid4())},
                                                     headers=h))
            assert response.status_code in (404, 503) and took < 2.0
            doomed = await (await client.post(workspace.url("/event-forwarding-rules"), headers=h, json={
                "name": f"doomed {outage}", "destination_id": destination["id"]})).get_json()
            response, took = await timed(client.delete(workspace.url(f"/event-forwarding-rules/{doomed['id']}"),
                                                       headers=h))
            assert response.status_code == 204 and took < 2.0

        # Temporal is back: the reconciler starts every enabled rule's workflow, and they forward.
        temporal.start()
        temporal_client = await serving(own.temporal_target)
        async with build_worker(temporal_client, sessions, own) as worker:
            assert await worker.reconcile() == 3
            response = await client.post("/v1/track", json={"event": "after", "userId": "u"},
                                         headers={"X-Write-Key": source["key"]})
            event_id = (await response.get_json())["id"]
            await sink.wait_for(lambda: sum(r.headers.get("webhook-id") == event_id for r in sink.received) >= 3,
                                timeout=30)
            # Replay works again, and its retry with the same key starts no second backfill.
            rules = (await (await client.get(workspace.url("/event-forwarding-rules"), headers=h)).get_json())["data"]
            replay = workspace.url(f"/event-forwarding-rules/{rules[0]['id']}/replay")
            first = await client.post(replay, json={"since": "2026-01-01T00:00:00Z"}, headers={**h, "Idempotency-Key": "r"})
            assert first.status_code == 202
            second = await client.post(replay, json={"since": "2026-01-01T00:00:00Z"}, headers={**h, "Idempotency-Key": "r"})
            assert (await second.get_json())["workflow_id"] == (await first.get_json())["workflow_id"]
            other = await client.post(replay, json={"since": "2026-02-01T00:00:00Z"}, headers={**h, "Idempotency-Key": "r"})
            assert other.status_code == 422 and (await other.get_json())["error"]["code"] == "idempotency_key_reused"
    await sink.stop()
