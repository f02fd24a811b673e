"""Two API processes and two workers (separate OS processes) against one Postgres and one
Temporal, as docker-compose.yml runs them: ingest through both (each with its own group
commit), rules created through either, every acknowledged event delivered, one workflow per
rule while both workers' reconcilers and wakers run (and a third worker comes and goes), live
clients on one API seeing events stored through the other, and a revoked key or write key
refused by both APIs within 2 seconds."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from tests.conftest import WorkerProcess, isolated_stack
from tests.sinks import Sink
from workflows.forwarding import workflow_id


@pytest.fixture(scope="module")
async def stack(settings, postgres_server_url, tmp_path_factory):
    async with isolated_stack(settings, postgres_server_url, tmp_path_factory.mktemp("scale-out"), apis=2,
                              workers=2) as running:
        yield running


async def running_workflows(temporal_env, rule_id: str) -> int:
    query = f'WorkflowId = "{workflow_id(rule_id)}" AND ExecutionStatus = "Running"'
    return len([w async for w in temporal_env.client.list_workflows(query)])


async def test_ingest_and_forwarding_across_processes(stack, temporal_env, tmp_path):
    workspace = await stack.workspace()
    sinks = [await Sink().start(), await Sink().start()]
    first, second = (api.client() for api in stack.apis)
    try:
        h = workspace.headers
        source = (await first.post(workspace.url("/event-keys"), json={"name": "s"}, headers=h)).json()
        rules = []
        for http, sink in zip((first, second), sinks, strict=True):  # one rule made through each API
            destination = (await http.post(workspace.url("/destinations"), headers=h, json={
                "name": "d", "type": "webhook", "config": {"url": sink.url, "mode": "batch"}})).json()
            rule = await http.post(workspace.url("/event-forwarding-rules"), headers=h,
                                   json={"name": "r", "destination_id": destination["id"]})
            assert rule.status_code == 201, rule.text
            rules.append(rule.json()["id"])

        async def send(http, n: int, wave: str) -> list[str]:
            answer = await http.post("/v1/batch", headers={"X-Write-Key": source["key"]}, json={"batch": [
                {"type": "track", "event": "Scaled", "userId": f"u{i}", "properties": {"wave": wave}}
                for i in range(n)]})
            assert answer.status_code == 200, answer.text
            return answer.json()["ids"]

        # Concurrent batches through both APIs: each process's group commit takes its own.
        acknowledged = [i for ids in await asyncio.gather(*(send(http, 50, "1") for http in (first, second) * 5))
                        for i in ids]
        assert len(set(acknowledged)) == 500

        # A third worker starts (its reconciler runs at once, while the others drive the rules)
        # and stops again, between two waves.
        extra = await asyncio.to_thread(WorkerProcess, stack.settings, tmp_path)
        acknowledged += [i for ids in await asyncio.gather(send(first, 100, "2"), send(second, 100, "2")) for i in ids]
        extra.stop()
        acknowledged += [i for ids in await asyncio.gather(send(first, 100, "3"), send(second, 100, "3")) for i in ids]

        for sink in sinks:  # every acknowledged event, at least once, at each rule's destination
            await sink.wait_for(lambda s=sink: set(acknowledged) <= {e["id"] for e in s.events()}, timeout=60)
        for rule_id in rules:
            assert await running_workflows(temporal_env, rule_id) == 1
            state = (await second.get(workspace.url(f"/event-forwarding-rules/{rule_id}"), headers=h)).json()
            assert state["stats"]["pending"] == 0
        duplicates = [Counter(e["id"] for e in sink.events()) for sink in sinks]
        print("duplicates per rule:", [sum(n - 1 for n in d.values()) for d in duplicates])
    finally:
        await first.aclose()
        await second.aclose()
        for sink in sinks:
            await sink.stop()


async def test_a_live_client_on_one_api_sees_events_stored_through_the_other(stack):
    workspace = await stack.workspace()
    async with stack.apis[0].client() as first, stack.apis[1].client() as second:
        source = (await first.post(workspace.url("/event-keys"), json={"name": "l"}, headers=workspace.headers)).json()
        token = (await second.post(workspace.url("/events/live-token"), headers=workspace.headers)).json()["token"]
        async with second.stream("GET", workspace.url(f"/events/live?token={token}")) as stream:
            assert stream.status_code == 200
            lines = stream.aiter_lines()
            await anext(lines)  # the stream is open (its first comment): the client is subscribed
            sent = await first.post("/v1/track", json={"event": "Seen elsewhere", "userId": "u"},
                                    headers={"X-Write-Key": source["key"]})
            event_id = sent.json()["id"]

            async def seen() -> None:
                async for line in lines:
                    if line == f"id: {event_id}":
                        return

            await asyncio.wait_for(seen(), timeout=10)


async def refused_by_both(stack, request) -> float:
    """Seconds until `request(http)` is refused (401/403) by both APIs."""
    started = time.monotonic()
    pending = {0, 1}
    clients = [api.client() for api in stack.apis]
    try:
        while pending:
            assert time.monotonic() - started < 10, f"API {pending} still accepts"
            for index in list(pending):
                if (await request(clients[index])).status_code in (401, 403):
                    pending.discard(index)
            await asyncio.sleep(0.05)
    finally:
        for client in clients:
            await client.aclose()
    return time.monotonic() - started


async def test_a_revoked_key_is_refused_by_both_apis_within_2_seconds(stack):
    workspace = await stack.workspace()
    async with stack.apis[0].client() as first, stack.apis[1].client() as second:
        spare = (await first.post(workspace.url("/master-keys"), json={"name": "spare"}, headers=workspace.headers)).json()
        spare_headers = {"Authorization": f"Bearer {spare['key']}"}
        source = (await first.post(workspace.url("/event-keys"), json={"name": "w"}, headers=workspace.headers)).json()
        write_key = {"X-Write-Key": source["key"]}
        for http in (first, second):  # both have the keys in their caches
            assert (await http.get(workspace.url(), headers=spare_headers)).status_code == 200
            assert (await http.post("/v1/track", json={"event": "e", "userId": "u"}, headers=write_key)).status_code == 200
        revoked = await second.delete(workspace.url(f"/master-keys/{spare['id']}"), headers=workspace.headers)
        assert revoked.status_code == 200, revoked.text
        assert await refused_by_both(stack, lambda http: http.get(workspace.url(), headers=spare_headers)) < 2
        revoked = await first.delete(workspace.url(f"/event-keys/{source['id']}"), headers=workspace.headers)
        assert revoked.status_code in (200, 204), revoked.text
        assert await refused_by_both(stack, lambda http: http.post(
            "/v1/track", json={"event": "e", "userId": "u"}, headers=write_key)) < 2
