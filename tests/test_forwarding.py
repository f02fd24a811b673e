"""Forwarding, end to end through real HTTP sinks on 127.0.0.1: both webhook modes with
signatures verified by `standardwebhooks`, 500 then 200, 400 dead-lettered, 429 with
Retry-After, a sink down then back, one dead destination not slowing another, transformation
drop and fan-out, redrive, replay, disable/enable/delete, private addresses (DNS rebinding
too), the Segment
destination (into another Headwater), the operator's view in Temporal, and a worker killed
mid-batch."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver
from sqlalchemy import event, update
from standardwebhooks.webhooks import Webhook
from temporalio.client import WorkflowExecutionStatus

from activities.transformations import Transformer
from forwarding.delivery import Delivery, Sender, check_public, http_session
from forwarding.engine import ForwardingEngine
from models.forwarding import ForwardingRule
from tests.conftest import ApiProcess, WorkspaceKey, eventually, make_workspace
from tests.sinks import Reply, Sink
from workflows.forwarding import ForwardingWorkflow, workflow_id
from workflows.params import ForwardingInput


@pytest.fixture
async def source(client, workspace: WorkspaceKey) -> dict:
    response = await client.post(workspace.url("/event-keys"), json={"name": "Web"}, headers=workspace.headers)
    return await response.get_json()


@pytest.fixture
async def sink():
    server = await Sink().start()
    yield server
    await server.stop()


async def make_destination(client, workspace, url: str, **config) -> dict:
    response = await client.post(workspace.url("/destinations"), headers=workspace.headers, json={
        "name": "Sink", "type": "webhook", "config": {"url": url, **config}})
    assert response.status_code == 201, await response.get_data()
    return await response.get_json()


async def make_rule(client, workspace, destination: dict, **fields) -> dict:
    response = await client.post(workspace.url("/event-forwarding-rules"), headers=workspace.headers, json={
        "name": "All to sink", "destination_id": destination["id"], **fields})
    assert response.status_code == 201, await response.get_data()
    return await response.get_json()


async def rule_state(client, workspace, rule) -> dict:
    response = await client.get(workspace.url(f"/event-forwarding-rules/{rule['id']}"), headers=workspace.headers)
    assert response.status_code == 200
    return await response.get_json()


async def track(client, source, name: str = "purchase", **fields) -> str:
    response = await client.post("/v1/track", json={"event": name, "userId": "u", **fields},
                                 headers={"X-Write-Key": source["key"]})
    assert response.status_code == 200
    return (await response.get_json())["id"]


async def batch(client, source, items: list[dict]) -> list[str]:
    response = await client.post("/v1/batch", json={"batch": items}, headers={"X-Write-Key": source["key"]})
    return (await response.get_json())["ids"]


def verify(destination: dict, request) -> object:
    """What a receiver does: check the Standard Webhooks signature (raises if wrong)."""
    return Webhook(destination["signing_secret"]).verify(request.body, request.headers)


async def test_webhook_single_mode_signed(client, workspace, source, sink):
    destination = await make_destination(client, workspace, sink.url, headers={"X-Team": "data"})
    assert destination["signing_secret"].startswith("whsec_")
    rule = await make_rule(client, workspace, destination)
    ids = [await track(client, source, properties={"n": n}) for n in range(3)]
    await sink.wait_for(lambda: len(sink.received) >= 3)
    # Single mode keeps up to 10 requests in flight by default: all arrive, maybe not in order.
    assert sorted(r.headers["webhook-id"] for r in sink.received) == sorted(ids)
    for request in sink.received:
        event_id = request.headers["webhook-id"]
        payload = verify(destination, request)
        stored = await (await client.get(workspace.url(f"/events/{event_id}"), headers=workspace.headers)).get_json()
        stored.pop("request_id")
        assert payload == stored  # the canonical event
        assert request.headers["x-team"] == "data" and request.method == "POST"
        assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 30

    async def delivered():
        state = await rule_state(client, workspace, rule)
        assert state["stats"]["delivered"] == 3 and state["stats"]["pending"] == 0
        assert state["stats"]["lag_seconds"] == 0 and state["stats"]["last_delivered_at"] is not None
        return state
    await eventually(delivered)
    attempts = (await (await client.get(workspace.url(f"/event-forwarding-rules/{rule['id']}/deliveries"),
                                        headers=workspace.headers)).get_json())["data"]
    assert sorted(a["event_ids"][0] for a in attempts) == sorted(ids)
    assert {a["outcome"] for a in attempts} == {"delivered"} and {a["status_code"] for a in attempts} == {200}
    # The secret is shown on create and on GET by id, never in lists.
    listed = (await (await client.get(workspace.url("/destinations"), headers=workspace.headers)).get_json())["data"]
    assert "signing_secret" not in listed[0]
    got = await (await client.get(workspace.url(f"/destinations/{destination['id']}"),
                                  headers=workspace.headers)).get_json()
    assert got["signing_secret"] == destination["signing_secret"]


async def test_webhook_batch_mode_signed(client, workspace, source, sink):
    destination = await make_destination(client, workspace, sink.url, mode="batch", max_batch_size=50, method="PUT")
    await make_rule(client, workspace, destination, event_types=["track"])
    ids = await batch(client, source, [{"type": "track", "event": "e", "userId": "u", "properties": {"i": i}}
                                       for i in range(120)] + [{"type": "identify", "userId": "u"}])
    await sink.wait_for(lambda: len(sink.events()) >= 120)
    assert all(len(r.json()) <= 50 for r in sink.received) and len(sink.received) >= 3
    for request in sink.received:
        assert request.method == "PUT" and request.headers["webhook-id"].startswith("msg_")
        assert verify(destination, request) == request.json()
    assert [e["id"] for e in sink.events()] == ids[:120]  # the identify is not a track


async def test_500_then_200_is_retried(client, workspace, source):
    answers = iter([Reply(500, body=b"oops")])
    sink = await Sink(lambda request: next(answers, Reply())).start()
    try:
        destination = await make_destination(client, workspace, sink.url)
        rule = await make_rule(client, workspace, destination)
        event_id = await track(client, source)
        await sink.wait_for(lambda: len(sink.received) >= 2)
        assert [r.headers["webhook-id"] for r in sink.received] == [event_id, event_id]  # same id on the retry

        async def settled():
            state = await rule_state(client, workspace, rule)
            assert state["stats"]["delivered"] == 1 and state["stats"]["dead_lettered"] == 0
            # The error is remembered with its time, and the rule says it is healthy again.
            assert state["stats"]["last_error"] == "HTTP 500" and state["stats"]["healthy"] is True
            assert state["stats"]["last_delivered_at"] >= state["stats"]["last_error_at"]
        await eventually(settled)
        attempts = (await (await client.get(workspace.url(f"/event-forwarding-rules/{rule['id']}/deliveries"),
                                            headers=workspace.headers)).get_json())["data"]
        assert [(a["outcome"], a["status_code"]) for a in attempts] == [("delivered", 200), ("held", 500)]
        assert attempts[1]["response_excerpt"] == "oops"
    finally:
        await sink.stop()


async def test_400_is_dead_lettered_at_once(client, workspace, source):
    sink = await Sink(lambda request: Reply(400, body=b'{"error": "unknown field total"}')
                      if request.json().get("event") == "bad" else Reply()).start()
    try:
        destination = await make_destination(client, workspace, sink.url)
        rule = await make_rule(client, workspace, destination)
        bad = await track(client, source, "bad")
        good = await track(client, source, "good")
        await sink.wait_for(lambda: len(sink.received) >= 2)

        async def dead_lettered():
            page = await (await client.get(workspace.url(f"/event-forwarding-rules/{rule['id']}/dead-letters"),
                                           headers=workspace.headers)).get_json()
            assert [d["event_id"] for d in page["data"]] == [bad]
            return page["data"][0]
        letter = await eventually(dead_lettered)
        assert letter["attempts"] == 1 and letter["last_status"] == 400 and letter["error"] == "HTTP 400"
        assert letter["response_excerpt"] == '{"error": "unknown field total"}'
        assert letter["first_attempt_at"] and letter["last_attempt_at"] and uuid.UUID(letter["id"])
        state = await rule_state(client, workspace, rule)
        assert state["stats"]["dead_lettered"] == 1 and state["stats"]["delivered"] == 1
        assert len([r for r in sink.received if r.headers["webhook-id"] == bad]) == 1  # not retried
        assert good in [r.headers["webhook-id"] for r in sink.received]
    finally:
        await sink.stop()


async def test_429_honours_retry_after(client, workspace, source):
    answers = iter([Reply(429, headers={"Retry-After": "2"})])
    sink = await Sink(lambda request: next(answers, Reply())).start()
    try:
        destination = await make_destination(client, workspace, sink.url)
        await make_rule(client, workspace, destination)
        await track(client, source)
        await sink.wait_for(lambda: len(sink.received) >= 2)
        first, second = sink.received[:2]
        assert second.at - first.at >= 1.9  # not the 0.2 s the backoff alone would wait
    finally:
        await sink.stop()


async def test_a_sink_down_for_a_while_then_back_gets_everything_in_order(client, workspace, source, sink):
    destination = await make_destination(client, workspace, sink.url, max_in_flight=1)  # strictly in order
    rule = await make_rule(client, workspace, destination)
    await sink.stop()
    ids = [await track(client, source, properties={"n": n}) for n in range(5)]

    async def held():
        state = await rule_state(client, workspace, rule)
        assert state["stats"]["pending"] == 5 and state["stats"]["delivered"] == 0
        assert "Cannot connect to host" in (state["stats"]["last_error"] or "")
        assert state["stats"]["lag_seconds"] > 0
    await eventually(held)
    await asyncio.sleep(1.5)  # a few more refused attempts
    await sink.start()
    await sink.wait_for(lambda: len(sink.received) >= 5)
    assert [r.headers["webhook-id"] for r in sink.received] == ids
    state = await rule_state(client, workspace, rule)
    assert state["stats"]["dead_lettered"] == 0


async def test_exhausted_retries_become_dead_letters(client, workspace, source):
    sink = await Sink(lambda request: Reply(503)).start()
    try:
        destination = await make_destination(client, workspace, sink.url, max_attempts=3, max_retry_age_seconds=0)
        rule = await make_rule(client, workspace, destination)
        event_id = await track(client, source)

        async def dead():
            state = await rule_state(client, workspace, rule)
            assert state["stats"]["dead_lettered"] == 1 and state["stats"]["pending"] == 0
        await eventually(dead)
        assert len(sink.received) == 3  # at least max_attempts, then given up
        letters = (await (await client.get(workspace.url(f"/event-forwarding-rules/{rule['id']}/dead-letters"),
                                           headers=workspace.headers)).get_json())["data"]
        assert [(d["event_id"], d["attempts"], d["last_status"]) for d in letters] == [(event_id, 3, 503)]
    finally:
        await sink.stop()


async def test_a_timeout_is_retried(client, workspace, source):
    answers = iter([Reply(delay=2.0)])
    sink = await Sink(lambda request: next(answers, Reply())).start()
    try:
        destination = await make_destination(client, workspace, sink.url, timeout_ms=300)
        rule = await make_rule(client, workspace, destination)
        event_id = await track(client, source)
        await sink.wait_for(lambda: len(sink.received) >= 2)
        assert [r.headers["webhook-id"] for r in sink.received] == [event_id, event_id]

        async def delivered():
            state = await rule_state(client, workspace, rule)
            assert state["stats"]["delivered"] == 1 and state["stats"]["last_error"] == "timed out after 300 ms"
        await eventually(delivered)
    finally:
        await sink.stop()


async def test_continue_as_new_keeps_delivering(client, workspace, source, sink, sessions, settings, temporal_env):
    """A short run (2 batches) continues as new and goes on from the rule's cursor."""
    destination = await make_destination(client, workspace, sink.url)
    rule = await make_rule(client, workspace, destination, enabled=False)
    async with sessions() as session, session.begin():  # enabled without the API starting a workflow
        await session.execute(update(ForwardingRule).where(ForwardingRule.id == uuid.UUID(rule["id"]))
                              .values(enabled=True))
    handle = await temporal_env.client.start_workflow(
        ForwardingWorkflow.run, ForwardingInput(rule_id=rule["id"], workspace_id=workspace.id, idle_seconds=0.5,
                                                batches_per_run=2),
        id=workflow_id(rule["id"]), task_queue=settings.task_queue)
    first_run = handle.result_run_id
    ids = []
    for _ in range(3):
        ids.append(await track(client, source))
        await sink.wait_for(lambda: len(sink.received) == len(ids))
    assert [r.headers["webhook-id"] for r in sink.received] == ids
    described = await temporal_env.client.get_workflow_handle(workflow_id(rule["id"])).describe()
    assert described.run_id != first_run and described.status == WorkflowExecutionStatus.RUNNING


async def test_one_dead_destination_does_not_slow_another(client, workspace, source, sink):
    async def hang(request):
        await asyncio.sleep(120)
        return Reply()
    dead = await Sink(hang).start()
    try:
        slow = await make_destination(client, workspace, dead.url, timeout_ms=60_000)
        await make_rule(client, workspace, slow, name="to the dead one")
        healthy = await make_destination(client, workspace, sink.url)
        await make_rule(client, workspace, healthy, name="to the healthy one")
        sent_at = {}
        for n in range(20):
            event_id = await track(client, source, properties={"n": n})
            sent_at[event_id] = time.monotonic()
            await asyncio.sleep(0.1)
        await sink.wait_for(lambda: len(sink.received) >= 20)
        lags = [r.at - sent_at[r.headers["webhook-id"]] for r in sink.received]
        # Had the healthy rule waited for the dead one, an event would have waited its 60 s
        # timeout; half of that leaves a loaded machine all the room it needs.
        assert max(lags) < 30.0, lags
        assert len(dead.received) >= 1  # the dead one was being tried all along
    finally:
        await dead.stop()


async def test_transformation_drop_and_fan_out(client, workspace, source, sink):
    code = ("function transform(event) {\n"
            "  if (event.event === 'skip') return null;\n"
            "  if (event.event === 'order') return event.properties.items.map(sku => ({event: 'item', sku}));\n"
            "  event.properties.seen = true; return event;\n}")
    response = await client.post(workspace.url("/event-transformations"), headers=workspace.headers,
                                 json={"name": "t", "source_code": code, "status": "active"})
    transformation = await response.get_json()
    destination = await make_destination(client, workspace, sink.url, max_in_flight=1)
    await make_rule(client, workspace, destination, transformation_id=transformation["id"])
    skip = await track(client, source, "skip")
    order = await track(client, source, "order", properties={"items": ["a", "b"]})
    plain = await track(client, source, "plain", properties={})
    await sink.wait_for(lambda: len(sink.received) >= 3)
    await asyncio.sleep(0.3)
    got = [(r.headers["webhook-id"], verify(destination, r)) for r in sink.received]
    assert got[:2] == [(f"{order}.0", {"event": "item", "sku": "a"}), (f"{order}.1", {"event": "item", "sku": "b"})]
    assert got[2][0] == plain and got[2][1]["properties"] == {"seen": True}
    assert skip not in [r.headers["webhook-id"].split(".")[0] for r in sink.received]
    # A transformation in use cannot be deleted.
    response = await client.delete(workspace.url(f"/event-transformations/{transformation['id']}"),
                                   headers=workspace.headers)
    assert response.status_code == 409


async def test_redrive(client, workspace, source):
    accept = False
    sink = await Sink(lambda request: Reply() if accept else Reply(422)).start()
    try:
        destination = await make_destination(client, workspace, sink.url)
        rule = await make_rule(client, workspace, destination)
        ids = [await track(client, source, properties={"n": n}) for n in range(3)]
        url = workspace.url(f"/event-forwarding-rules/{rule['id']}/dead-letters")

        async def three_dead():
            assert len((await (await client.get(url, headers=workspace.headers)).get_json())["data"]) == 3
        await eventually(three_dead)
        accept = True
        # Some by id, then the rest.
        response = await client.post(url + "/redrive", json={"ids": [ids[0]]}, headers=workspace.headers)
        assert response.status_code == 202 and (await response.get_json())["workflow_id"].startswith("redrive-")
        await sink.wait_for(lambda: ids[0] in [r.headers["webhook-id"] for r in sink.received if r.json()])

        async def two_left():
            data = (await (await client.get(url, headers=workspace.headers)).get_json())["data"]
            assert sorted(d["event_id"] for d in data) == sorted(ids[1:])
        await eventually(two_left)
        response = await client.post(url + "/redrive", headers=workspace.headers)
        assert response.status_code == 202

        async def none_left():
            assert (await (await client.get(url, headers=workspace.headers)).get_json())["data"] == []
            state = await rule_state(client, workspace, rule)
            assert state["stats"]["delivered"] == 3 and state["stats"]["pending"] == 0
            # Dead letters now, and ever.
            assert state["stats"]["dead_lettered"] == 0 and state["stats"]["dead_lettered_total"] == 3
        await eventually(none_left)
    finally:
        await sink.stop()


async def test_dead_letters_filtered_counted_and_redriven_by_filter(client, workspace, source):
    """"Redrive all matching" sends every dead letter the filter matches (the count first), not
    a page of them, and leaves the others."""
    accept = False

    def answer(request):
        if accept:
            return Reply()
        n = request.json()["properties"]["n"]
        return Reply(400, body=b"Quota exceeded for this account") if n % 2 else Reply(422, body=b"bad payload")

    sink = await Sink(answer).start()
    try:
        destination = await make_destination(client, workspace, sink.url)
        rule = await make_rule(client, workspace, destination)
        ids = [await track(client, source, properties={"n": n}) for n in range(6)]
        url = workspace.url(f"/event-forwarding-rules/{rule['id']}/dead-letters")

        async def count(query: str = "") -> int:
            response = await client.get(f"{url}/count{query}", headers=workspace.headers)
            assert response.status_code == 200, await response.get_data()
            return (await response.get_json())["count"]

        async def six_dead():
            assert await count() == 6
        await eventually(six_dead)
        assert await count("?status=400") == 3 and await count("?status=422") == 3
        assert await count("?error=QUOTA") == 3 and await count("?error=quota&status=422") == 0
        assert await count("?error=100%25") == 0  # LIKE's wildcards are taken literally
        assert await count("?until=2000-01-01T00:00:00Z") == 0 and await count("?since=2000-01-01T00:00:00Z") == 6
        listed = (await (await client.get(f"{url}?status=400&limit=2", headers=workspace.headers)).get_json())
        assert len(listed["data"]) == 2 and listed["next_cursor"]
        assert (await client.get(f"{url}/count?status=99", headers=workspace.headers)).status_code == 400
        both = await client.post(url + "/redrive", json={"ids": [ids[0]], "status": 400}, headers=workspace.headers)
        assert both.status_code == 422

        accept = True
        response = await client.post(url + "/redrive", json={"error": "quota"}, headers=workspace.headers)
        assert response.status_code == 202

        async def only_the_422s_left():
            data = (await (await client.get(url, headers=workspace.headers)).get_json())["data"]
            assert sorted(d["event_id"] for d in data) == sorted(ids[0::2])
            assert (await rule_state(client, workspace, rule))["stats"]["delivered"] == 3
        await eventually(only_the_422s_left)
    finally:
        await sink.stop()


async def test_the_delivery_funnel(client, workspace, source):
    """matched → dropped by the transformation → delivered / retried → dead-lettered, by hour."""
    code = "function transform(event) { return event.event === 'skip' ? null : event; }"
    transformation = await (await client.post(workspace.url("/event-transformations"), headers=workspace.headers,
                                              json={"name": "t", "source_code": code, "status": "active"})).get_json()
    sink = await Sink(lambda request: Reply(400) if request.json()["properties"].get("bad") else Reply()).start()
    try:
        destination = await make_destination(client, workspace, sink.url)
        rule = await make_rule(client, workspace, destination, transformation_id=transformation["id"],
                               event_names=["buy", "skip"])
        for name, properties in (("buy", {}), ("buy", {}), ("buy", {"bad": True}), ("skip", {}), ("skip", {}),
                                 ("other", {})):
            await track(client, source, name, properties=properties)
        url = workspace.url(f"/event-forwarding-rules/{rule['id']}/funnel")

        async def settled():
            response = await client.get(url, headers=workspace.headers)
            assert response.status_code == 200, await response.get_data()
            body = await response.get_json()
            assert {k: body[k] for k in ("matched", "dropped", "delivered", "dead_lettered", "retrying_now")} == {
                "matched": 5, "dropped": 2, "delivered": 2, "dead_lettered": 1, "retrying_now": 0}
        await eventually(settled)
        empty = await (await client.get(url + "?since=2001-01-01T00:00:00Z&until=2001-01-02T00:00:00Z",
                                        headers=workspace.headers)).get_json()
        assert empty["matched"] == empty["delivered"] == 0
        backwards = await client.get(url + "?since=2001-01-02T00:00:00Z&until=2001-01-01T00:00:00Z",
                                     headers=workspace.headers)
        assert backwards.status_code == 400
    finally:
        await sink.stop()


async def test_replay_sends_older_events(client, workspace, source, sink):
    before = [await track(client, source, properties={"n": n}) for n in range(4)]
    since = (await (await client.get(workspace.url(f"/events/{before[1]}"), headers=workspace.headers)).get_json())[
        "received_at"]
    destination = await make_destination(client, workspace, sink.url, max_in_flight=1)
    rule = await make_rule(client, workspace, destination)
    after = await track(client, source, properties={"n": 4})
    await sink.wait_for(lambda: len(sink.received) >= 1)
    await asyncio.sleep(0.5)
    assert [r.headers["webhook-id"] for r in sink.received] == [after]  # only events after the rule
    response = await client.post(workspace.url(f"/event-forwarding-rules/{rule['id']}/replay"), json={"since": since},
                                 headers=workspace.headers)
    assert response.status_code == 202 and (await response.get_json())["workflow_id"].startswith("replay-")
    await sink.wait_for(lambda: len(sink.received) >= 5)
    await asyncio.sleep(0.5)
    # Everything received since `since` that the rule had passed, in commit order, once more
    # (`after` too: a replay re-sends; receivers drop what they have by webhook-id).
    assert [r.headers["webhook-id"] for r in sink.received] == [after, *before[1:], after]
    bad = await client.post(workspace.url(f"/event-forwarding-rules/{rule['id']}/replay"), json={"since": "soon"},
                            headers=workspace.headers)
    assert bad.status_code == 422


async def workflow_status(temporal_env, rule) -> WorkflowExecutionStatus:
    return (await temporal_env.client.get_workflow_handle(workflow_id(rule["id"])).describe()).status


async def test_disable_enable_delete(client, workspace, source, sink, temporal_env):
    destination = await make_destination(client, workspace, sink.url)
    rule = await make_rule(client, workspace, destination)
    url = workspace.url(f"/event-forwarding-rules/{rule['id']}")
    first = await track(client, source)
    await sink.wait_for(lambda: len(sink.received) == 1)
    assert await workflow_status(temporal_env, rule) == WorkflowExecutionStatus.RUNNING

    assert (await client.put(url, json={"enabled": False}, headers=workspace.headers)).status_code == 200

    async def ended():
        assert await workflow_status(temporal_env, rule) == WorkflowExecutionStatus.COMPLETED
    await eventually(ended)
    while_off = await track(client, source)
    await asyncio.sleep(1.0)
    assert [r.headers["webhook-id"] for r in sink.received] == [first]

    assert (await client.put(url, json={"enabled": True}, headers=workspace.headers)).status_code == 200
    await sink.wait_for(lambda: len(sink.received) == 2)
    assert sink.received[1].headers["webhook-id"] == while_off  # resumed where it stopped
    assert await workflow_status(temporal_env, rule) == WorkflowExecutionStatus.RUNNING

    # An edit applies from the next batch.
    assert (await client.put(url, json={"event_names": ["only-this"]}, headers=workspace.headers)).status_code == 200
    await track(client, source, "other")
    wanted = await track(client, source, "only-this")
    await sink.wait_for(lambda: len(sink.received) == 3)
    assert sink.received[2].headers["webhook-id"] == wanted

    assert (await client.delete(url, headers=workspace.headers)).status_code == 204
    await eventually(ended)
    assert (await client.get(url, headers=workspace.headers)).status_code == 404


async def test_operators_see_status_and_can_filter_by_workspace(client, workspace, source, sink, temporal_env):
    destination = await make_destination(client, workspace, sink.url)
    rule = await make_rule(client, workspace, destination)
    await track(client, source)
    await sink.wait_for(lambda: len(sink.received) == 1)
    handle = temporal_env.client.get_workflow_handle_for(ForwardingWorkflow.run, workflow_id(rule["id"]))

    async def caught_up():
        status = await handle.query(ForwardingWorkflow.status)
        assert status.rule_id == rule["id"] and status.delivered == 1 and status.state in ("waiting", "delivering")
        assert status.cursor and status.last_error is None and status.attempts == 0
    await eventually(caught_up)

    async def listed():
        found = [w.id async for w in temporal_env.client.list_workflows(f'WorkspaceId = "{workspace.id}"')]
        assert workflow_id(rule["id"]) in found
        found = [w.id async for w in temporal_env.client.list_workflows(f'RuleId = "{rule["id"]}"')]
        assert found == [workflow_id(rule["id"])]
    await eventually(listed)


async def test_private_addresses_refused(app, settings, workspace, sessions, sandbox, client, source, sink):
    strict_app = __import__("web").create_app(settings.model_copy(update={"allow_private_destinations": False}))
    async with strict_app.test_app() as test_app:
        strict = test_app.test_client()
        for url in ("http://127.0.0.1:9/x", "http://10.1.2.3/x", "http://169.254.169.254/latest", "http://[::1]/x",
                    "http://localhost:9/x", "http://192.168.0.1/x", "http://no-such-host.invalid/x"):
            response = await strict.post(workspace.url("/destinations"), headers=workspace.headers, json={
                "name": "x", "type": "webhook", "config": {"url": url}})
            assert response.status_code == 422, url
            assert (await response.get_json())["error"]["code"] == "private_destination"
        response = await strict.post(workspace.url("/destinations"), headers=workspace.headers, json={
            "name": "x", "type": "segment", "config": {"host": "http://127.0.0.1:1", "write_key": "k"}})
        assert (await response.get_json())["error"]["code"] == "private_destination"

    # And again at delivery (DNS can change): a rule whose destination is private is held.
    destination = await make_destination(client, workspace, sink.url)
    rule = await make_rule(client, workspace, destination, enabled=False)
    await track(client, source)
    strict_settings = settings.model_copy(update={"allow_private_destinations": False})
    async with aiohttp.ClientSession() as http:
        engine = ForwardingEngine(sessions, Transformer(sessions, sandbox, strict_settings), http, strict_settings)
        await client.put(workspace.url(f"/event-forwarding-rules/{rule['id']}"), json={"enabled": True},
                         headers=workspace.headers)
        # (the real workflow may also run it; either way nothing reaches the sink from this run)
        result = await engine.forward_batch(uuid.UUID(rule["id"]), 100)
    assert result.state == "held" and "127.0.0.1" in result.last_error and "refused" in result.last_error


async def test_validation(client, workspace, other_workspace, sink):
    bad_configs = [
        {"name": "x", "type": "webhook", "config": {}},
        {"name": "x", "type": "webhook", "config": {"url": "ftp://example.com"}},
        {"name": "x", "type": "webhook", "config": {"url": sink.url, "mode": "sometimes"}},
        {"name": "x", "type": "webhook", "config": {"url": sink.url, "headers": {"webhook-id": "x"}}},
        {"name": "x", "type": "webhook", "config": {"url": sink.url, "timeout_ms": 0}},
        {"name": "x", "type": "segment", "config": {"host": sink.base}},
        {"name": "x", "type": "kafka", "config": {"url": sink.url}},
    ]
    for body in bad_configs:
        response = await client.post(workspace.url("/destinations"), json=body, headers=workspace.headers)
        assert response.status_code == 422, body
    destination = await make_destination(client, workspace, sink.url)
    foreign = await make_destination(client, other_workspace, sink.url)
    for body in ({"name": "r", "destination_id": foreign["id"]}, {"name": "r", "destination_id": str(uuid.uuid4())},
                 {"name": "r", "destination_id": destination["id"], "event_types": ["nope"]},
                 {"name": "r", "destination_id": destination["id"], "transformation_id": str(uuid.uuid4())}):
        response = await client.post(workspace.url("/event-forwarding-rules"), json=body, headers=workspace.headers)
        assert response.status_code == 422, body
    draft = await (await client.post(workspace.url("/event-transformations"), headers=workspace.headers, json={
        "name": "d", "source_code": "function transform(e) { return e; }"})).get_json()
    response = await client.post(workspace.url("/event-forwarding-rules"), headers=workspace.headers, json={
        "name": "r", "destination_id": destination["id"], "transformation_id": draft["id"]})
    assert (await response.get_json())["error"]["code"] == "transformation_not_active"
    rule = await make_rule(client, workspace, destination, enabled=False)
    response = await client.delete(workspace.url(f"/destinations/{destination['id']}"), headers=workspace.headers)
    assert response.status_code == 409 and (await response.get_json())["error"]["code"] == "destination_in_use"
    assert (await client.get(other_workspace.url(f"/event-forwarding-rules/{rule['id']}"),
                             headers=other_workspace.headers)).status_code == 404
    assert (await client.delete(workspace.url(f"/event-forwarding-rules/{rule['id']}"),
                                headers=workspace.headers)).status_code == 204
    assert (await client.delete(workspace.url(f"/destinations/{destination['id']}"),
                                headers=workspace.headers)).status_code == 204


async def test_rotated_secret_signs_beside_the_old_one(client, workspace, source, sink):
    destination = await make_destination(client, workspace, sink.url)
    await make_rule(client, workspace, destination)
    response = await client.post(workspace.url(f"/destinations/{destination['id']}/rotate-secret"),
                                 headers=workspace.headers)
    rotated = await response.get_json()
    assert response.status_code == 200 and rotated["signing_secret"] != destination["signing_secret"]
    assert rotated["previous_secret_expires_at"] is not None
    await track(client, source)
    await sink.wait_for(lambda: len(sink.received) == 1)
    request = sink.received[0]
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    verify(destination, request)  # receivers still on the old secret
    verify(rotated, request)  # and those already on the new one


async def test_segment_destination_into_another_headwater(client, workspace, source, sessions, api_processes):
    remote = await make_workspace(sessions, "remote")
    remote_api = api_processes[0]
    async with remote_api.client() as http:
        remote_source = (await http.post(f"/api/v1/workspaces/{remote.id}/event-keys", json={"name": "from local"},
                                         headers=remote.headers)).json()
    response = await client.post(workspace.url("/destinations"), headers=workspace.headers, json={
        "name": "Remote Headwater", "type": "segment",
        "config": {"host": remote_api.base_url, "write_key": remote_source["key"]}})
    destination = await response.get_json()
    await make_rule(client, workspace, destination)
    sent = [await track(client, source, properties={"n": n}) for n in range(3)]
    await client.post("/v1/identify", json={"userId": "u", "traits": {"plan": "pro"}},
                      headers={"X-Write-Key": source["key"]})

    async def arrived():
        async with remote_api.client() as http:
            body = http.get(f"/api/v1/workspaces/{remote.id}/events?limit=100", headers=remote.headers)
            data = (await body).json()["data"]
        assert len(data) == 4
        return data
    data = await eventually(arrived)
    tracks = sorted((e for e in data if e["type"] == "track"), key=lambda e: e["properties"]["n"])
    assert [e["message_id"] for e in tracks] == sent  # messageId = the local event id: dedup downstream
    assert [e["user_id"] for e in data] == ["u"] * 4


async def test_worker_killed_mid_batch_loses_nothing(settings, sessions, tmp_path):
    """A rule served by a worker process that is SIGKILLed while its batch is in flight: a new
    worker redelivers that batch (at least once), nothing is lost."""
    queue = f"kill-test-{uuid.uuid4().hex[:8]}"
    in_flight = asyncio.Event()

    async def slow(request):
        in_flight.set()
        await asyncio.sleep(1.0)
        return Reply()
    sink = await Sink(slow).start()
    workspace = await make_workspace(sessions, "kill")
    env = {**os.environ, "DATABASE_URL": settings.database_url, "TEMPORAL_ADDRESS": settings.temporal_address,
           "HEADWATER_TASK_QUEUE": queue, "HEADWATER_LOG_LEVEL": "WARNING", "HEADWATER_ALLOW_PRIVATE_DESTINATIONS": "true",
           "HEADWATER_RETRY_BASE_SECONDS": "0.2", "HEADWATER_FORWARD_IDLE_SECONDS": "1"}

    def start_worker() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "worker.py"], env=env, stdout=open(tmp_path / "worker.log", "ab"),
                                stderr=subprocess.STDOUT)

    api = ApiProcess(settings, tmp_path, HEADWATER_TASK_QUEUE=queue, HEADWATER_ALLOW_PRIVATE_DESTINATIONS="true")
    worker = start_worker()
    try:
        async with api.client() as http:
            source = (await http.post(f"/api/v1/workspaces/{workspace.id}/event-keys", json={"name": "s"},
                                      headers=workspace.headers)).json()
            destination = (await http.post(f"/api/v1/workspaces/{workspace.id}/destinations", headers=workspace.headers,
                                           json={"name": "slow", "type": "webhook",
                                                 "config": {"url": sink.url, "mode": "batch", "max_batch_size": 10}})).json()
            await http.post(f"/api/v1/workspaces/{workspace.id}/event-forwarding-rules", headers=workspace.headers,
                            json={"name": "r", "destination_id": destination["id"]})
            ids = (await http.post("/v1/batch", headers={"X-Write-Key": source["key"]}, json={"batch": [
                {"type": "track", "event": "e", "userId": "u", "properties": {"i": i}} for i in range(50)]})).json()["ids"]
            await asyncio.wait_for(in_flight.wait(), 30)
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            delivered_before = {e["id"] for e in sink.events()}
            assert len(delivered_before) < 50  # killed mid-batch
            worker = start_worker()
            await sink.wait_for(lambda: {e["id"] for e in sink.events()} >= set(ids), timeout=60)
    finally:
        worker.kill()
        worker.wait(10)
        api.stop()
        await sink.stop()


class ScriptedResolver(AbstractResolver):
    """DNS this test controls: each lookup takes the next answer (the last one repeats)."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.lookups = 0

    async def resolve(self, host, port=0, family=socket.AF_INET):
        self.lookups += 1
        address = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return [{"hostname": host, "host": address, "port": port, "family": socket.AF_INET, "proto": 0,
                 "flags": 0}]

    async def close(self):
        pass


async def test_dns_rebinding_is_refused_at_connect_time(settings, sink):
    """The name resolves to a public address when checked, then to 127.0.0.1 (where the sink
    listens) when connected to: with the guard on, the connection itself is refused."""
    url = f"http://rebind.example:{sink.port}/hook"
    delivery = Delivery(["evt_1"], ['{"id":"evt_1"}'], ["evt_1"])
    strict = settings.model_copy(update={"allow_private_destinations": False})
    resolver = ScriptedResolver("93.184.216.34", "127.0.0.1")
    await check_public(url, resolver)  # the check passes: the name looked public then
    async with http_session(strict, resolver) as http:
        answer = await Sender(http, "webhook", {"url": url}, ["whsec_" + "A" * 32]).send(delivery)
    assert answer.outcome == "retry" and "127.0.0.1" in answer.error, answer
    assert resolver.lookups == 2 and sink.received == []
    # The same trick without the guard reaches the sink: the test can tell.
    async with http_session(settings, ScriptedResolver("127.0.0.1")) as http:
        answer = await Sender(http, "webhook", {"url": url}, ["whsec_" + "A" * 32]).send(delivery)
    assert answer.outcome == "delivered" and len(sink.received) == 1


async def test_a_held_rule_is_unhealthy_and_its_lag_is_one_figure(client, workspace, source, temporal_env):
    """The API's stats and the workflow's `status` query measure lag the same way: the age of
    the oldest event the rule has still to deliver."""
    sink = await Sink(lambda request: Reply(503)).start()
    try:
        destination = await make_destination(client, workspace, sink.url)
        rule = await make_rule(client, workspace, destination)
        await track(client, source)
        await sink.wait_for(lambda: len(sink.received) >= 2)
        handle = temporal_env.client.get_workflow_handle_for(ForwardingWorkflow.run, workflow_id(rule["id"]))

        async def held():
            status = await handle.query(ForwardingWorkflow.status)
            assert status.state == "held" and status.lag_seconds > 0
            asked = time.monotonic()
            stats = (await rule_state(client, workspace, rule))["stats"]
            assert stats["healthy"] is False and stats["last_error"] == "HTTP 503"
            assert stats["last_error_at"] is not None and stats["pending"] == 1
            return status, stats, asked
        status, stats, _ = await eventually(held)
        # The status was measured at the rule's last attempt, the stats just now: the same figure
        # but for the time between them (the backoff is at most retry_max_seconds, 3 s here).
        assert status.lag_seconds <= stats["lag_seconds"] <= status.lag_seconds + 4
    finally:
        await sink.stop()


async def test_destinations_show_the_max_in_flight_in_force(client, workspace, sink):
    single = await make_destination(client, workspace, sink.url)
    batched = await make_destination(client, workspace, sink.url, mode="batch")
    chosen = await make_destination(client, workspace, sink.url, max_in_flight=3)
    for destination, expected in ((single, 10), (batched, 1), (chosen, 3)):
        assert destination["config"]["max_in_flight"] == expected
        got = await (await client.get(workspace.url(f"/destinations/{destination['id']}"),
                                      headers=workspace.headers)).get_json()
        assert got["config"]["max_in_flight"] == expected


async def test_listing_rules_reads_their_stats_in_one_statement(app, client, sessions, sink):
    engine = app.app.extensions["headwater"].engine
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    counts = []
    for rules in (1, 6):
        workspace = await make_workspace(sessions)
        destination = await make_destination(client, workspace, sink.url)
        for _ in range(rules):
            await make_rule(client, workspace, destination, enabled=False)
        event.listen(engine.sync_engine, "before_cursor_execute", count)
        try:
            statements.clear()
            listed = await client.get(workspace.url("/event-forwarding-rules"), headers=workspace.headers)
            assert len((await listed.get_json())["data"]) == rules
            counts.append(len(statements))
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert counts[0] == counts[1], counts
