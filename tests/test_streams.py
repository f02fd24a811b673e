"""Anonymous streams: ingest, validation, idempotency, info, rate limits, claim and its races."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select
from temporalio import activity
from temporalio.worker import Worker

from activities.streams import claim_stream
from models.events import Event
from models.streams import Stream, StreamEvent
from tests.conftest import WorkspaceKey, make_workspace
from web import create_app
from workflows.params import ClaimStreamInput, ClaimStreamResult
from workflows.stream_claim import StreamClaimWorkflow


def audit(action: str = "user.created", **overrides: Any) -> dict[str, Any]:
    event = {"action": action, "category": "mutation", "actor": {"id": "user_1", "type": "user"},
             "tenant_id": "acme"}
    event.update(overrides)
    return event


async def post(client, token: str, body: Any, ip: str, headers: dict | None = None):
    return await client.post(f"/api/v1/streams/{token}/events", json=body, headers=headers or {},
                             scope_base={"client": (ip, 40000)})


async def info(client, token: str, ip: str) -> dict:
    response = await client.get(f"/api/v1/streams/{token}/info", scope_base={"client": (ip, 40000)})
    return await response.get_json()


async def claim(client, token: str, workspace: WorkspaceKey):
    return await client.post("/api/v1/streams/claim", json={"claim_token": token}, headers=workspace.headers)


async def events_of(client, workspace: WorkspaceKey, query: str = "") -> list[dict]:
    response = await client.get(workspace.url(f"/events?limit=1000{query}"), headers=workspace.headers)
    assert response.status_code == 200
    return (await response.get_json())["data"]


# --- ingest ----------------------------------------------------------------------------------

async def test_single_event_then_info(client, token, client_ip):
    response = await post(client, token, audit(), client_ip)
    body = await response.get_json()
    assert response.status_code == 200, body
    assert set(body) == {"ids", "redacted_count", "request_id"}
    assert len(body["ids"]) == 1 and body["ids"][0].startswith("evt_")
    assert body["redacted_count"] == 0
    assert response.headers["RateLimit-Limit"] == "30"

    stream = await info(client, token, client_ip)
    assert set(stream) == {"claim_token", "event_count", "status", "created_at", "expires_at", "request_id"}
    assert stream["claim_token"] == token
    assert stream["event_count"] == 1
    assert stream["status"] == "active"
    assert stream["created_at"].endswith("Z") and stream["expires_at"].endswith("Z")
    from models.timestamps import parse_iso

    assert (parse_iso(stream["expires_at"]) - parse_iso(stream["created_at"])).days == 7


async def test_batch_of_events(client, token, client_ip):
    batch = {"events": [audit(f"doc.edited_{i}", metadata={"n": i}) for i in range(100)]}
    response = await post(client, token, batch, client_ip)
    body = await response.get_json()
    assert response.status_code == 200, body
    assert len(body["ids"]) == len(set(body["ids"])) == 100
    assert (await info(client, token, client_ip))["event_count"] == 100


async def test_redacted_count_reported(client, token, client_ip):
    event = audit(actor={"id": "u1", "type": "user", "email": "jane@example.com", "name": "Jane"},
                  metadata={"ip": "203.0.113.9", "note": "call +1 415 555 2671", "password": "hunter2"})
    body = await (await post(client, token, event, client_ip)).get_json()
    assert body["redacted_count"] == 4


async def test_unknown_stream_info_is_404(client, client_ip):
    response = await client.get(f"/api/v1/streams/{uuid.uuid4()}/info", scope_base={"client": (client_ip, 1)})
    assert response.status_code == 404
    assert (await response.get_json())["error"]["code"] == "stream_not_found"


BAD_TOKENS = [
    "not-a-uuid",
    "a1b2c3d4-e5f6-1a7b-8c9d-0e1f2a3b4c5d",  # version 1
    "a1b2c3d4-e5f6-4a7b-cc9d-0e1f2a3b4c5d",  # wrong variant
    "a1b2c3d4e5f64a7b8c9d0e1f2a3b4c5d",      # no dashes
    "{a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d}",
    "00000000-0000-0000-0000-000000000000",
    "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5",   # one short
]


@pytest.mark.parametrize("bad_token", BAD_TOKENS)
async def test_bad_tokens_are_400(client, bad_token, client_ip):
    for response in (await post(client, bad_token, audit(), client_ip),
                     await client.get(f"/api/v1/streams/{bad_token}/info", scope_base={"client": (client_ip, 1)})):
        assert response.status_code == 400
        assert (await response.get_json())["error"]["code"] == "invalid_token"


INVALID_EVENTS = [
    ({"action": None}, "action"),
    ({"action": "created"}, "action"),                 # not dot-namespaced
    ({"action": "User.Created"}, "action"),            # uppercase
    ({"action": "user..created"}, "action"),
    ({"action": "user.created."}, "action"),
    ({"action": "a." + "b" * 127}, "action"),          # longer than 128
    ({"action": 5}, "action"),
    ({"category": "billing"}, "category"),
    ({"category": None}, "category"),
    ({"actor": None}, "actor"),
    ({"actor": "user_1"}, "actor"),
    ({"actor": {"type": "user"}}, "actor.id"),
    ({"actor": {"id": "u1"}}, "actor.type"),
    ({"actor": {"id": "", "type": "user"}}, "actor.id"),
    ({"actor": {"id": "u1", "type": "user", "email": 7}}, "actor.email"),
    ({"actor": {"id": "u1", "type": "user", "role": "x"}}, "actor.role"),
    ({"tenant_id": None}, "tenant_id"),
    ({"tenant_id": ""}, "tenant_id"),
    ({"tenant_id": 42}, "tenant_id"),
    ({"target": "doc_1"}, "target"),
    ({"target": {"id": 1}}, "target.id"),
    ({"metadata": [1, 2]}, "metadata"),
    ({"metadata": "x"}, "metadata"),
    ({"metadata": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}}, "metadata"),
    ({"metadata": {"blob": "x" * 17_000}}, "metadata"),
    ({"idempotency_key": ""}, "idempotency_key"),
    ({"idempotency_key": 12}, "idempotency_key"),
    ({"unexpected": True}, "unexpected"),
]


@pytest.mark.parametrize(("change", "field"), INVALID_EVENTS)
async def test_every_invalid_field_is_named_and_nothing_stored(client, token, client_ip, change, field):
    event = audit()
    for key, value in change.items():
        if value is None:
            event.pop(key, None)
        else:
            event[key] = value
    response = await post(client, token, {"events": [audit(), event]}, client_ip)
    body = await response.get_json()
    assert response.status_code == 422, body
    assert body["error"]["code"] == "validation_failed"
    assert any(d["field"] == f"events[1].{field}" for d in body["error"]["details"]), body
    # Nothing from the request was stored: the stream was not even created.
    assert (await client.get(f"/api/v1/streams/{token}/info", scope_base={"client": (client_ip, 1)})).status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"events": []}, 422, "validation_failed"),
        ({"events": "x"}, 422, "validation_failed"),
        ({"events": [1]}, 422, "validation_failed"),
        ({"events": [audit()], "extra": 1}, 422, "validation_failed"),
        ({"events": [audit()] * 101}, 422, "batch_too_large"),
        ([audit()], 400, "body_not_object"),
    ],
)
async def test_malformed_batches(client, token, client_ip, body, status, code):
    response = await post(client, token, body, client_ip)
    assert response.status_code == status
    assert (await response.get_json())["error"]["code"] == code


async def test_bad_bodies_on_the_stream_endpoint(client, token, client_ip):
    for raw, status in ((b"", 400), (b"{", 400), (b'{"action": "a\\u0000.b"}', 400), (b"\xff", 400)):
        response = await client.post(f"/api/v1/streams/{token}/events", data=raw,
                                     headers={"Content-Type": "application/json"},
                                     scope_base={"client": (client_ip, 1)})
        assert response.status_code == status, raw
    response = await client.post(f"/api/v1/streams/{token}/events", data=b"x" * (2 * 1024 * 1024),
                                 headers={"Content-Type": "application/json"}, scope_base={"client": (client_ip, 1)})
    assert response.status_code == 413


async def test_idempotency_key_repeat_returns_first_id(client, token, client_ip):
    first = await (await post(client, token, audit(idempotency_key="k-1"), client_ip)).get_json()
    again = await (await post(client, token, audit(idempotency_key="k-1"), client_ip)).get_json()
    assert again["ids"] == first["ids"]
    both = await (await post(client, token, {"events": [audit(idempotency_key="k-2"), audit(idempotency_key="k-2"),
                                                        audit(idempotency_key="k-1")]}, client_ip)).get_json()
    assert both["ids"][0] == both["ids"][1] != first["ids"][0]
    assert both["ids"][2] == first["ids"][0]
    assert (await info(client, token, client_ip))["event_count"] == 2


# --- rate limits -----------------------------------------------------------------------------

async def clear_of_the_minute_edge(needed: float = 15.0) -> None:
    """The per-minute limits count in fixed windows: a test that fills one must not straddle
    two (it did, once in a while). Waits for the next minute when fewer than `needed` seconds
    of this one remain."""
    left = 60 - time.time() % 60
    if left < needed:
        await asyncio.sleep(left + 0.05)


def assert_limited(response, body: dict, code: str) -> None:
    assert response.status_code == 429, body
    assert body["error"]["code"] == code
    for header in ("Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
        assert header in response.headers, header
    assert int(response.headers["Retry-After"]) >= 1


async def test_requests_per_minute_per_ip(client, client_ip):
    await clear_of_the_minute_edge()
    token = str(uuid.uuid4())
    for n in range(30):
        response = await post(client, token, audit(idempotency_key="same"), client_ip)
        assert response.status_code == 200, n
        assert response.headers["RateLimit-Remaining"] == str(29 - n)
    response = await post(client, token, audit(), client_ip)
    assert_limited(response, await response.get_json(), "rate_limited")
    assert response.headers["RateLimit-Limit"] == "30"
    assert response.headers["RateLimit-Remaining"] == "0"
    # Another IP is not affected.
    assert (await post(client, token, audit(), client_ip.replace("10.", "11.", 1))).status_code == 200


async def test_events_per_day_per_stream(client, token, client_ip):
    for _ in range(2):
        response = await post(client, token, {"events": [audit() for _ in range(45)]}, client_ip)
        assert response.status_code == 200
    # 90 stored; a batch of 20 would cross 100 and is refused whole, saying how many fit.
    response = await post(client, token, {"events": [audit() for _ in range(20)]}, client_ip)
    body = await response.get_json()
    assert_limited(response, body, "stream_daily_limit")
    assert body["error"]["details"] == {"limit": 100, "fits": 10}
    assert response.headers["RateLimit-Remaining"] == "10"
    assert (await info(client, token, client_ip))["event_count"] == 90
    assert (await post(client, token, {"events": [audit() for _ in range(10)]}, client_ip)).status_code == 200
    response = await post(client, token, audit(), client_ip)
    assert_limited(response, await response.get_json(), "stream_daily_limit")


async def test_lifetime_events_per_stream(settings, token, client_ip):
    tight = settings.model_copy(update={"stream_events_per_day": 1000, "stream_lifetime_events": 5})
    async with create_app(tight).test_app() as app:
        client = app.test_client()
        assert (await post(client, token, {"events": [audit() for _ in range(4)]}, client_ip)).status_code == 200
        response = await post(client, token, {"events": [audit(), audit()]}, client_ip)
        body = await response.get_json()
        assert_limited(response, body, "stream_lifetime_limit")
        assert body["error"]["details"] == {"limit": 5, "fits": 1}
        assert "claim" in body["error"]["message"].lower()
        assert (await post(client, token, audit(), client_ip)).status_code == 200
        assert (await info(client, token, client_ip))["event_count"] == 5


async def test_new_streams_per_day_per_ip(client, client_ip):
    for _ in range(10):
        assert (await post(client, str(uuid.uuid4()), audit(), client_ip)).status_code == 200
    refused = str(uuid.uuid4())
    response = await post(client, refused, audit(), client_ip)
    assert_limited(response, await response.get_json(), "stream_creation_limit")
    # The refused request stored nothing: no stream for that token.
    assert (await client.get(f"/api/v1/streams/{refused}/info", scope_base={"client": ("10.255.0.1", 1)})).status_code == 404


async def test_limits_hold_across_two_api_processes(api_processes):
    await clear_of_the_minute_edge()
    token = str(uuid.uuid4())
    forwarded = {"X-Forwarded-For": "198.51.100.77"}
    clients = [p.client() for p in api_processes]
    try:
        statuses = []
        for n in range(31):
            response = await clients[n % 2].post(f"/api/v1/streams/{token}/events", json=audit(), headers=forwarded)
            statuses.append(response.status_code)
        assert statuses[:30] == [200] * 30
        assert statuses[30] == 429
        assert response.json()["error"]["code"] == "rate_limited"
        assert all(h in response.headers for h in ("Retry-After", "RateLimit-Limit", "RateLimit-Remaining",
                                                   "RateLimit-Reset"))
        # Both processes counted into the same stream as well.
        got = await clients[1].get(f"/api/v1/streams/{token}/info", headers={"X-Forwarded-For": "198.51.100.78"})
        assert got.json()["event_count"] == 30
    finally:
        for c in clients:
            await c.aclose()


async def test_forwarded_for_counts_only_from_trusted_proxies(settings, client_ip):
    proxied = settings.model_copy(update={"trusted_proxies": ["192.0.2.0/24"], "stream_requests_per_minute": 1})
    await clear_of_the_minute_edge()
    async with create_app(proxied).test_app() as app:
        client = app.test_client()
        token = str(uuid.uuid4())

        async def send(peer: str, forwarded: str):
            return await client.post(f"/api/v1/streams/{token}/events", json=audit(),
                                     headers={"X-Forwarded-For": forwarded}, scope_base={"client": (peer, 1)})

        # Through the trusted proxy, each forwarded client has its own allowance.
        assert (await send("192.0.2.10", "203.0.113.1")).status_code == 200
        assert (await send("192.0.2.10", "203.0.113.2")).status_code == 200
        assert (await send("192.0.2.10", "203.0.113.1")).status_code == 429
        # An untrusted peer cannot pick its address with the header.
        assert (await send(client_ip, "203.0.113.3")).status_code == 200
        assert (await send(client_ip, "203.0.113.4")).status_code == 429


# --- claim -----------------------------------------------------------------------------------

async def test_claim_moves_events_and_locks_stream(client, token, client_ip, workspace: WorkspaceKey):
    posted = await (await post(client, token, {"events": [audit(f"doc.v{i}") for i in range(5)]}, client_ip)).get_json()
    response = await claim(client, token, workspace)
    body = await response.get_json()
    assert response.status_code == 200, body
    assert body["event_count"] == 5
    stored = await events_of(client, workspace)
    assert sorted(e["id"] for e in stored) == sorted(posted["ids"])
    assert all(e["type"] == "audit" and e["workspace_id"] == workspace.id for e in stored)
    assert {e["name"] for e in stored} == {f"doc.v{i}" for i in range(5)}
    stream = await info(client, token, client_ip)
    assert stream["status"] == "claimed" and stream["event_count"] == 5

    refused = await post(client, token, audit(), client_ip)
    refused_body = await refused.get_json()
    assert refused.status_code == 409
    assert refused_body["error"]["code"] == "stream_claimed"
    assert "credentials" in refused_body["error"]["message"]

    again = await claim(client, token, workspace)
    assert again.status_code == 200 and (await again.get_json())["event_count"] == 5
    assert len(await events_of(client, workspace)) == 5


async def test_claim_by_another_workspace_is_409(client, token, client_ip, workspace, other_workspace):
    await post(client, token, audit(), client_ip)
    assert (await claim(client, token, workspace)).status_code == 200
    response = await claim(client, token, other_workspace)
    assert response.status_code == 409
    assert (await response.get_json())["error"]["code"] == "stream_already_claimed"
    assert await events_of(client, other_workspace) == []


async def test_claim_unknown_stream_is_404(client, workspace):
    response = await claim(client, str(uuid.uuid4()), workspace)
    assert response.status_code == 404
    assert (await response.get_json())["error"]["code"] == "stream_not_found"


async def test_claim_needs_a_master_key_and_a_valid_token(client, token, workspace):
    assert (await client.post("/api/v1/streams/claim", json={"claim_token": token})).status_code == 401
    response = await client.post("/api/v1/streams/claim", json={"claim_token": "nope"}, headers=workspace.headers)
    assert response.status_code == 400
    response = await client.post("/api/v1/streams/claim", json={}, headers=workspace.headers)
    assert response.status_code == 422


async def test_claim_expired_stream_is_410(client, token, client_ip, workspace, sessions):
    await post(client, token, audit(), client_ip)
    async with sessions() as session, session.begin():
        stream = await session.get(Stream, uuid.UUID(token))
        stream.expires_at = func.now()
    response = await claim(client, token, workspace)
    assert response.status_code == 410
    assert (await response.get_json())["error"]["code"] == "stream_expired"
    assert (await info(client, token, client_ip))["status"] == "expired"
    refused = await post(client, token, audit(), client_ip)
    assert refused.status_code == 410


async def test_two_concurrent_claims_exactly_one_wins(client, token, client_ip, sessions):
    await post(client, token, {"events": [audit() for _ in range(7)]}, client_ip)
    contenders = [await make_workspace(sessions, f"racer-{i}") for i in range(4)]
    responses = await asyncio.gather(*(claim(client, token, w) for w in contenders))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 409, 409, 409], statuses
    winner = contenders[[r.status_code for r in responses].index(200)]
    assert len(await events_of(client, winner)) == 7
    for loser in contenders:
        if loser is not winner:
            assert await events_of(client, loser) == []


async def test_posts_racing_a_claim_are_moved_or_refused(settings, worker, token, client_ip, workspace, sessions):
    # Limits roomy enough that only the claim stops the posters, however long it takes.
    roomy = settings.model_copy(update={"stream_events_per_day": 100_000, "stream_lifetime_events": 100_000,
                                       "stream_requests_per_minute": 10_000})
    async with create_app(roomy).test_app() as app:
        await _race_posts_against_a_claim(app.test_client(), token, client_ip, workspace, sessions)


async def _race_posts_against_a_claim(client, token, client_ip, workspace, sessions):
    await post(client, token, audit(idempotency_key="seed"), client_ip)
    acknowledged: list[str] = []
    refused = 0
    claimed = asyncio.Event()

    async def poster(n: int) -> None:
        nonlocal refused
        ip = f"172.16.{n}.1"
        i = 0
        while True:
            response = await post(client, token, {"events": [audit(idempotency_key=f"{n}-{i}-{j}") for j in range(3)]}, ip)
            i += 1
            if response.status_code == 200:
                acknowledged.extend((await response.get_json())["ids"])
            elif response.status_code == 409:
                refused += 1
                return
            else:
                raise AssertionError(await response.get_data())
            if claimed.is_set() and i > 40:
                raise AssertionError("posts kept succeeding after the claim")

    async def claimer() -> None:
        await asyncio.sleep(0.05)
        response = await claim(client, token, workspace)
        assert response.status_code == 200
        claimed.set()

    await asyncio.gather(poster(1), poster(2), poster(3), claimer())
    stored = [e["id"] for e in await events_of(client, workspace)]
    assert refused == 3
    assert len(stored) == len(set(stored))                         # never duplicated
    assert set(acknowledged) <= set(stored)                         # never lost
    assert len(stored) == len(set(acknowledged)) + 1                # plus the seed
    async with sessions() as session:
        left = await session.scalar(select(func.count()).select_from(StreamEvent).where(
            StreamEvent.token == uuid.UUID(token)))
    assert left == 0


async def test_retried_claim_activity_moves_nothing_twice(settings, temporal_env, sessions, client, token,
                                                          client_ip, workspace):
    """The activity commits, then fails before Temporal hears of it; the retry must report the
    same count and move nothing again."""
    await post(client, token, {"events": [audit() for _ in range(6)]}, client_ip)
    results: list[ClaimStreamResult] = []

    @activity.defn(name="claim_stream")
    async def claim_then_crash(params: ClaimStreamInput) -> ClaimStreamResult:
        result = await claim_stream(sessions, params)
        results.append(result)
        if activity.info().attempt == 1:
            raise RuntimeError("worker lost after commit")
        return result

    queue = f"claim-retry-{uuid.uuid4()}"
    async with Worker(temporal_env.client, task_queue=queue, workflows=[StreamClaimWorkflow],
                      activities=[claim_then_crash]):
        result = await temporal_env.client.execute_workflow(
            StreamClaimWorkflow.run, ClaimStreamInput(token=token, workspace_id=workspace.id),
            id=f"stream-claim-{token}", task_queue=queue,
        )
    assert [r.event_count for r in results] == [6, 6]
    assert result.outcome == "claimed" and result.event_count == 6
    async with sessions() as session:
        count = await session.scalar(select(func.count()).select_from(Event).where(
            Event.workspace_id == uuid.UUID(workspace.id)))
    assert count == 6


# --- the workspace events API ----------------------------------------------------------------

async def test_events_api_filters_and_pages(client, token, client_ip, workspace):
    batch = [audit(f"doc.v{i % 3}", category="access" if i % 2 else "mutation", tenant_id=f"t{i % 2}",
                   actor={"id": f"u{i % 4}", "type": "user"}) for i in range(25)]
    await post(client, token, {"events": batch}, client_ip)
    await claim(client, token, workspace)

    everything = await events_of(client, workspace)
    assert len(everything) == 25
    assert [e["id"] for e in everything] == sorted((e["id"] for e in everything), reverse=True)  # newest first

    pages, cursor = [], None
    while True:
        query = "/events?limit=7" + (f"&cursor={cursor}" if cursor else "")
        body = await (await client.get(workspace.url(query), headers=workspace.headers)).get_json()
        pages.append(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [7, 7, 7, 4]
    assert [e["id"] for p in pages for e in p] == [e["id"] for e in everything]

    assert len(await events_of(client, workspace, "&name=doc.v0")) == 9
    assert len(await events_of(client, workspace, "&category=access")) == 12
    assert len(await events_of(client, workspace, "&tenant_id=t1&actor_id=u1")) == 6
    assert len(await events_of(client, workspace, "&type=audit")) == 25
    assert await events_of(client, workspace, "&type=track") == []
    assert await events_of(client, workspace, "&since=2999-01-01T00:00:00Z") == []
    assert len(await events_of(client, workspace, "&until=2999-01-01T00:00:00Z")) == 25

    one = everything[3]
    got = await client.get(workspace.url(f"/events/{one['id']}"), headers=workspace.headers)
    assert got.status_code == 200 and (await got.get_json())["id"] == one["id"]


async def test_event_of_another_workspace_is_404(client, token, client_ip, workspace, other_workspace):
    ids = (await (await post(client, token, audit(), client_ip)).get_json())["ids"]
    await claim(client, token, workspace)
    response = await client.get(other_workspace.url(f"/events/{ids[0]}"), headers=other_workspace.headers)
    assert response.status_code == 404
    assert (await response.get_json())["error"]["code"] == "event_not_found"
