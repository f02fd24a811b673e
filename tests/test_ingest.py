"""Source-keyed ingestion: sources, every endpoint and auth style, Segment field names,
clock skew, dedup, limits, partial batches, revocation, last_used_at, the test event, group
commit, and a failed commit."""

from __future__ import annotations

import asyncio
import base64
import gzip
import time
import uuid
from datetime import timedelta

import orjson
import pytest
from sqlalchemy import func, select

from models.events import Event
from models.timestamps import parse_iso
from tests.conftest import WorkspaceKey, holds_by


@pytest.fixture(params=["lane", "blueprint"])
def client(request, app, app_without_lane):
    """Every ingest test runs twice: through the ingest lane (how the API serves /v1/*) and
    through the Quart blueprint, which must behave identically."""
    return (app if request.param == "lane" else app_without_lane).test_client()


@pytest.fixture
async def source(client, workspace: WorkspaceKey) -> dict:
    response = await client.post(workspace.url("/event-keys"), json={"name": "Web App"}, headers=workspace.headers)
    assert response.status_code == 201
    return await response.get_json()


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


async def stored(client, workspace: WorkspaceKey, query: str = "") -> list[dict]:
    body = await (await client.get(workspace.url(f"/events?limit=1000{query}"), headers=workspace.headers)).get_json()
    return body["data"]


# --- sources -----------------------------------------------------------------------------

async def test_source_object_has_exactly_the_documented_fields(client, workspace, source):
    assert set(source) - {"request_id"} == {"id", "workspace_id", "name", "key", "status", "redact", "pubsub_topic",
                                            "last_used_at", "created_by", "created_at", "updated_at"}
    assert source["status"] == "active" and source["workspace_id"] == workspace.id and source["redact"] == "audit"
    assert source["key"].startswith("wk_")
    assert source["pubsub_topic"] == f"hw_events_{uuid.UUID(workspace.id).hex}"
    keys = await (await client.get(workspace.url("/master-keys"), headers=workspace.headers)).get_json()
    assert source["created_by"] == keys["data"][0]["id"]
    listed = await (await client.get(workspace.url("/event-keys"), headers=workspace.headers)).get_json()
    assert [s["key"] for s in listed["data"]] == [source["key"]]  # the key is public: listed in full


async def test_sources_are_isolated(client, workspace, other_workspace, source):
    response = await client.delete(other_workspace.url(f"/event-keys/{source['id']}"), headers=other_workspace.headers)
    assert response.status_code == 404
    response = await client.post(other_workspace.url(f"/event-keys/{source['id']}/test-event"),
                                 headers=other_workspace.headers)
    assert response.status_code == 404
    assert (await client.get(workspace.url("/event-keys"), headers=other_workspace.headers)).status_code == 404


# --- endpoints x auth styles ----------------------------------------------------------------

BODIES = {
    "track": {"event": "purchase_completed", "userId": "u1", "properties": {"total": 99.99}},
    "identify": {"userId": "u1", "traits": {"plan": "pro"}},
    "page": {"anonymousId": "a1", "name": "Pricing", "properties": {"url": "https://example.com/pricing"}},
    "screen": {"user_id": "u1", "name": "Home"},
    "group": {"user_id": "u1", "groupId": "company-456", "traits": {"employees": 250}},
    "events": {"type": "track", "event": "signed_up", "anonymous_id": "a2"},
}
AUTH_STYLES = ["header", "basic", "query", "body"]


@pytest.mark.parametrize("auth", AUTH_STYLES)
@pytest.mark.parametrize("endpoint", list(BODIES))
async def test_each_endpoint_with_each_auth_style(client, workspace, source, endpoint, auth):
    body, headers, path = dict(BODIES[endpoint]), {}, f"/v1/{endpoint}"
    if auth == "header":
        headers["X-Write-Key"] = source["key"]
    elif auth == "basic":
        headers["Authorization"] = basic(source["key"])
    elif auth == "query":
        path += f"?writeKey={source['key']}"
    else:
        body["writeKey"] = source["key"]
    response = await client.post(path, json=body, headers=headers)
    answer = await response.get_json()
    assert response.status_code == 200, answer
    assert answer["success"] is True and answer["id"].startswith("evt_")
    got = await (await client.get(workspace.url(f"/events/{answer['id']}"), headers=workspace.headers)).get_json()
    assert got["type"] == ("track" if endpoint == "events" else endpoint)
    assert got["source_id"] == source["id"]
    assert "writeKey" not in got


async def test_canonical_form_from_camel_and_snake_case(client, workspace, source):
    camel = {"event": "Order Done", "userId": "u9", "anonymousId": "anon9", "messageId": "msg-camel",
             "properties": {"total": 5}, "context": {"ip": "198.51.100.4", "locale": "en-GB"},
             "integrations": {"All": True}}
    snake = {"event": "Order Done", "user_id": "u9", "anonymous_id": "anon9", "message_id": "msg-snake",
             "properties": {"total": 5}, "context": {"ip": "198.51.100.4", "locale": "en-GB"},
             "integrations": {"All": True}}
    ids = []
    for body in (camel, snake):
        answer = await (await client.post("/v1/track", json=body, headers={"X-Write-Key": source["key"]})).get_json()
        ids.append(answer["id"])
    events = [await (await client.get(workspace.url(f"/events/{i}"), headers=workspace.headers)).get_json()
              for i in ids]
    for event in events:
        assert event["user_id"] == "u9" and event["anonymous_id"] == "anon9"
        assert event["event"] == event["name"] == "Order Done"
        assert event["context"] == {"ip": "198.51.100.4", "locale": "en-GB"}
        assert "userId" not in event and "messageId" not in event
    strip = lambda e: {k: v for k, v in e.items()  # noqa: E731
                       if k not in ("id", "message_id", "timestamp", "received_at", "request_id")}
    assert strip(events[0]) == strip(events[1])
    assert events[0]["message_id"] == "msg-camel"


async def test_context_ip_filled_from_request_when_absent(client, workspace, source):
    answer = await (await client.post("/v1/track", json={"event": "x", "userId": "u"},
                                      headers={"X-Write-Key": source["key"]},
                                      scope_base={"client": ("203.0.113.50", 1)})).get_json()
    event = await (await client.get(workspace.url(f"/events/{answer['id']}"), headers=workspace.headers)).get_json()
    assert event["context"]["ip"] == "203.0.113.50"


async def test_clock_skew_correction(client, workspace, source):
    # The client's clock is 1 hour fast: it says it sent at 13:00:10 an event made at 13:00:00.
    body = {"event": "skewed", "userId": "u", "timestamp": "2030-01-01T13:00:00Z", "sentAt": "2030-01-01T13:00:10Z"}
    answer = await (await client.post("/v1/track", json=body, headers={"X-Write-Key": source["key"]})).get_json()
    event = await (await client.get(workspace.url(f"/events/{answer['id']}"), headers=workspace.headers)).get_json()
    received = parse_iso(event["received_at"])
    assert parse_iso(event["timestamp"]) == received - timedelta(seconds=10)
    assert event["original_timestamp"] == "2030-01-01T13:00:00.000Z"
    assert event["sent_at"] == "2030-01-01T13:00:10.000Z"
    # Batch-level sentAt applies to every item; without sentAt the timestamp is kept; without
    # either, it is the server's time.
    batch = {"sentAt": "2030-01-01T13:00:10Z", "batch": [
        {"type": "track", "event": "b", "userId": "u", "timestamp": "2030-01-01T13:00:05Z"}]}
    answer = await (await client.post("/v1/batch", json=batch, headers={"X-Write-Key": source["key"]})).get_json()
    event = await (await client.get(workspace.url(f"/events/{answer['ids'][0]}"), headers=workspace.headers)).get_json()
    assert parse_iso(event["timestamp"]) == parse_iso(event["received_at"]) - timedelta(seconds=5)
    answer = await (await client.post("/v1/track", json={"event": "t", "userId": "u", "timestamp": "2020-05-05T05:05:05Z"},
                                      headers={"X-Write-Key": source["key"]})).get_json()
    event = await (await client.get(workspace.url(f"/events/{answer['id']}"), headers=workspace.headers)).get_json()
    assert event["timestamp"] == "2020-05-05T05:05:05.000Z"
    answer = await (await client.post("/v1/track", json={"event": "t", "userId": "u"},
                                      headers={"X-Write-Key": source["key"]})).get_json()
    event = await (await client.get(workspace.url(f"/events/{answer['id']}"), headers=workspace.headers)).get_json()
    assert event["timestamp"] == event["received_at"]
    # A correction no calendar can hold (found by schemathesis: it was a 500) is refused, by name.
    for wild in ({"timestamp": "0001-01-02T00:00:00Z", "sentAt": "9999-01-01T00:00:00Z"},
                 {"timestamp": "9999-12-30T00:00:00Z", "sentAt": "0001-01-01T00:00:00Z"}):
        response = await client.post("/v1/track", json={"event": "t", "userId": "u", **wild},
                                     headers={"X-Write-Key": source["key"]})
        assert response.status_code == 422, await response.get_data()
        assert (await response.get_json())["error"]["details"][0]["field"] == "sentAt"


async def test_message_id_dedup(client, workspace, source, sessions):
    body = {"event": "paid", "userId": "u", "messageId": "dup-1"}
    first = await (await client.post("/v1/track", json=body, headers={"X-Write-Key": source["key"]})).get_json()
    again = await (await client.post("/v1/track", json=body, headers={"X-Write-Key": source["key"]})).get_json()
    assert again["id"] == first["id"]
    batch = await (await client.post("/v1/batch", json={"batch": [
        {**body, "type": "track"}, {"type": "track", "event": "x", "userId": "u", "messageId": "dup-2"},
        {"type": "track", "event": "x", "userId": "u", "messageId": "dup-2"}]},
        headers={"X-Write-Key": source["key"]})).get_json()
    assert batch["accepted"] == 3
    assert batch["ids"][0] == first["id"] and batch["ids"][1] == batch["ids"][2]
    # Concurrent repeats share a group commit and are still stored once.
    responses = await asyncio.gather(*(
        client.post("/v1/track", json={**body, "messageId": "dup-3"}, headers={"X-Write-Key": source["key"]})
        for _ in range(10)))
    assert len({(await r.get_json())["id"] for r in responses}) == 1
    async with sessions() as session:
        count = await session.scalar(select(func.count()).select_from(Event).where(
            Event.workspace_id == uuid.UUID(workspace.id), Event.message_id.in_(["dup-1", "dup-2", "dup-3"])))
    assert count == 3
    # Missing messageId gets one.
    answer = await (await client.post("/v1/track", json={"event": "x", "userId": "u"},
                                      headers={"X-Write-Key": source["key"]})).get_json()
    event = await (await client.get(workspace.url(f"/events/{answer['id']}"), headers=workspace.headers)).get_json()
    assert event["message_id"]


async def test_message_ids_are_per_workspace(client, source, workspace, other_workspace):
    other = await (await client.post(other_workspace.url("/event-keys"), json={"name": "x"},
                                     headers=other_workspace.headers)).get_json()
    body = {"event": "e", "userId": "u", "messageId": "shared-id"}
    a = await (await client.post("/v1/track", json=body, headers={"X-Write-Key": source["key"]})).get_json()
    b = await (await client.post("/v1/track", json=body, headers={"X-Write-Key": other["key"]})).get_json()
    assert a["id"] != b["id"]
    assert len(await stored(client, other_workspace)) == 1


# --- validation and limits -----------------------------------------------------------------

INVALID = [
    ("track", {"userId": "u"}, "event"),
    ("track", {"event": "x"}, "user_id"),
    ("track", {"event": "x", "userId": "", "anonymousId": None}, "user_id"),
    ("track", {"event": 5, "userId": "u"}, "event"),
    ("track", {"event": "x", "userId": "u", "properties": [1]}, "properties"),
    ("track", {"event": "x", "userId": "u", "context": "web"}, "context"),
    ("track", {"event": "x", "userId": "u", "timestamp": "yesterday"}, "timestamp"),
    ("track", {"event": "x", "userId": {"id": 1}}, "user_id"),
    ("identify", {"userId": "u", "traits": "pro"}, "traits"),
    ("group", {"userId": "u"}, "group_id"),
    ("events", {"type": "purchase", "userId": "u"}, "type"),
    ("events", {"userId": "u"}, "type"),
    ("events", {"type": "audit", "action": "x", "category": "auth", "actor": {"id": "a", "type": "user"},
                "tenant_id": "t"}, "action"),
]


@pytest.mark.parametrize(("endpoint", "body", "field"), INVALID)
async def test_invalid_single_events_are_422(client, workspace, source, endpoint, body, field):
    response = await client.post(f"/v1/{endpoint}", json=body, headers={"X-Write-Key": source["key"]})
    answer = await response.get_json()
    assert response.status_code == 422, answer
    assert answer["error"]["code"] == "validation_failed"
    assert answer["error"]["details"][0]["field"] == field
    assert await stored(client, workspace) == []


async def test_audit_events_through_v1_events(client, workspace, source):
    body = {"type": "audit", "action": "user.deleted", "category": "admin", "actor": {"id": "adm", "type": "user"},
            "tenant_id": "acme", "target": {"id": "u7", "type": "user"}, "metadata": {"reason": "gdpr"}}
    answer = await (await client.post("/v1/events", json=body, headers={"X-Write-Key": source["key"]})).get_json()
    event = await (await client.get(workspace.url(f"/events/{answer['id']}"), headers=workspace.headers)).get_json()
    assert event["type"] == "audit" and event["name"] == "user.deleted"
    assert event["tenant_id"] == "acme" and event["actor"] == {"id": "adm", "type": "user"}
    assert len(await stored(client, workspace, "&tenant_id=acme&actor_id=adm&category=admin")) == 1


async def test_auth_failures(client, source, workspace):
    response = await client.post("/v1/track", json={"event": "x", "userId": "u"})
    assert response.status_code == 401 and (await response.get_json())["error"]["code"] == "missing_write_key"
    response = await client.post("/v1/track", json={"event": "x", "userId": "u"}, headers={"X-Write-Key": "wk_nope"})
    assert response.status_code == 401 and (await response.get_json())["error"]["code"] == "invalid_write_key"
    response = await client.post("/v1/track", json={"event": "x", "userId": "u"},
                                 headers={"Authorization": "Basic !!notbase64"})
    assert response.status_code == 401
    response = await client.post("/v1/track", json={"event": "x", "userId": "u"},
                                 headers={"X-Write-Key": "k" * 5000})
    assert response.status_code == 401


async def test_per_event_size_limit(client, workspace, source):
    big = {"event": "big", "userId": "u", "properties": {"blob": "x" * (33 * 1024)}}
    response = await client.post("/v1/track", json=big, headers={"X-Write-Key": source["key"]})
    assert response.status_code == 413
    assert (await response.get_json())["error"]["code"] == "event_too_large"
    answer = await (await client.post("/v1/batch", json={"batch": [{**big, "type": "track"},
                                                                  {"type": "track", "event": "ok", "userId": "u"}]},
                                      headers={"X-Write-Key": source["key"]})).get_json()
    assert answer["accepted"] == 1
    assert answer["rejected"] == [{"index": 0, "code": "event_too_large", "message": "an event may be at most 32 KB"}]


async def test_request_size_limit(client, workspace, source):
    items = [{"type": "track", "event": "e", "userId": "u", "properties": {"pad": "x" * 20_000}} for _ in range(30)]
    response = await client.post("/v1/batch", json={"batch": items}, headers={"X-Write-Key": source["key"]})
    assert response.status_code == 413
    assert (await response.get_json())["error"]["code"] == "payload_too_large"
    # Compressed small, but 600 KB once decoded: still too large.
    raw = gzip.compress(orjson.dumps({"batch": items}))
    assert len(raw) < 100_000
    response = await client.post("/v1/batch", data=raw, headers={"X-Write-Key": source["key"],
                                                                 "Content-Encoding": "gzip",
                                                                 "Content-Type": "application/json"})
    assert response.status_code == 413
    # Over the API's body ceiling (1 MB) before any decoding.
    huge = orjson.dumps({"batch": [{"type": "track", "event": "e", "userId": "u", "properties": {"pad": "x" * 30_000}}
                                   for _ in range(40)]})
    response = await client.post("/v1/batch", data=huge, headers={"X-Write-Key": source["key"],
                                                                  "Content-Type": "application/json"})
    assert response.status_code == 413
    assert (await response.get_json())["error"]["code"] == "payload_too_large"
    assert await stored(client, workspace) == []


async def test_request_id_header_and_other_methods(client, source):
    response = await client.post("/v1/track", json={"event": "e", "userId": "u"}, headers={"X-Write-Key": source["key"]})
    body = await response.get_json()
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    assert response.headers["X-Request-Id"] == body["request_id"] and body["request_id"].startswith("req_")
    failed = await client.post("/v1/track", data=b"{", headers={"X-Write-Key": source["key"],
                                                               "Content-Type": "application/json"})
    assert failed.headers["X-Request-Id"] == (await failed.get_json())["request_id"]
    # Only POST is ingestion; other methods and unknown /v1 paths get the API's JSON errors.
    response = await client.get("/v1/track")
    assert response.status_code == 405 and (await response.get_json())["error"]["code"] == "method_not_allowed"
    response = await client.post("/v1/nothing", json={})
    assert response.status_code == 404 and (await response.get_json())["error"]["code"] == "not_found"


async def test_batch_count_limit(client, workspace, source):
    items = [{"type": "track", "event": "e", "userId": "u"} for _ in range(2501)]
    response = await client.post("/v1/batch", json={"batch": items}, headers={"X-Write-Key": source["key"]})
    assert response.status_code == 413
    assert (await response.get_json())["error"]["code"] == "batch_too_large"
    answer = await (await client.post("/v1/batch", json={"batch": items[:2500]},
                                      headers={"X-Write-Key": source["key"]})).get_json()
    assert answer["accepted"] == 2500 and len(set(answer["ids"])) == 2500


async def test_mixed_valid_and_invalid_batch(client, workspace, source):
    items = [
        {"type": "track", "event": "ok1", "userId": "u"},
        {"type": "track", "userId": "u"},
        {"type": "identify", "anonymousId": "a", "traits": {"x": 1}},
        "not an object",
        {"type": "nonsense", "userId": "u"},
        {"type": "group", "userId": "u", "groupId": "g1"},
        {"type": "track", "event": "nul\u0000", "userId": "u"},
    ]
    response = await client.post("/v1/batch", json={"batch": items}, headers={"X-Write-Key": source["key"]})
    answer = await response.get_json()
    assert response.status_code == 200
    assert answer["accepted"] == 3 and len(answer["ids"]) == 3
    assert [r["index"] for r in answer["rejected"]] == [1, 3, 4, 6]
    assert all(r["code"] in ("validation_failed", "invalid_string") and r["message"] for r in answer["rejected"])
    assert sorted(e["type"] for e in await stored(client, workspace)) == ["group", "identify", "track"]


@pytest.mark.parametrize(("raw", "content_type", "status", "code"), [
    (b"not json", "application/json", 400, "invalid_json"),
    (b"[]", "application/json", 400, "body_not_object"),
    (b'{"batch": "x"}', "application/json", 400, "invalid_batch"),
    (b'{"events": []}', "application/json", 400, "invalid_batch"),
    (b"", "application/json", 400, "empty_body"),
    (b"\x1f\x8b\x00garbage", "application/json", 400, "invalid_encoding"),
    (b"<xml/>", "application/xml", 415, "unsupported_media_type"),
])
async def test_malformed_batch_requests_store_nothing(client, workspace, source, raw, content_type, status, code):
    headers = {"X-Write-Key": source["key"], "Content-Type": content_type}
    if raw.startswith(b"\x1f\x8b"):
        headers["Content-Encoding"] = "gzip"
    response = await client.post("/v1/batch", data=raw, headers=headers)
    assert response.status_code == status
    assert (await response.get_json())["error"]["code"] == code
    assert await stored(client, workspace) == []


async def test_text_plain_and_deflate_bodies_are_accepted(client, workspace, source):
    import zlib

    body = orjson.dumps({"event": "beacon", "anonymousId": "a", "writeKey": source["key"]})
    assert (await client.post("/v1/track", data=body, headers={"Content-Type": "text/plain"})).status_code == 200
    response = await client.post("/v1/track", data=zlib.compress(body),
                                 headers={"Content-Type": "application/json", "Content-Encoding": "deflate"})
    assert response.status_code == 200
    assert len(await stored(client, workspace)) == 2


# --- revocation, last_used_at, test event --------------------------------------------------

async def test_revoked_key_stops_working_on_every_process_within_2s(api_processes, client, workspace, source):
    body = {"event": "x", "userId": "u"}
    async with api_processes[0].client() as a, api_processes[1].client() as b:
        for c in (a, b):
            assert (await c.post("/v1/track", json=body, headers={"X-Write-Key": source["key"]})).status_code == 200
        revoked = await a.delete(f"/api/v1/workspaces/{workspace.id}/event-keys/{source['id']}",
                                 headers=workspace.headers)
        assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
        deadline = time.monotonic() + 2.0
        for c in (a, b):  # each process refuses the key within 2 s of the revocation
            async def refused(c=c) -> bool:
                response = await c.post("/v1/track", json=body, headers={"X-Write-Key": source["key"]})
                assert response.status_code in (200, 401)
                return response.status_code == 401 and response.json()["error"]["code"] == "source_revoked"
            await holds_by(deadline, refused, "the revocation")
    response = await client.post(workspace.url(f"/event-keys/{source['id']}/test-event"), headers=workspace.headers)
    assert response.status_code == 409


async def test_test_event_and_last_used_at(client, workspace, source):
    response = await client.post(workspace.url(f"/event-keys/{source['id']}/test-event"), headers=workspace.headers)
    answer = await response.get_json()
    assert response.status_code == 200 and answer["id"].startswith("evt_")
    event = await (await client.get(workspace.url(f"/events/{answer['id']}"), headers=workspace.headers)).get_json()
    assert event["type"] == "track" and event["source_id"] == source["id"]
    listed = await (await client.get(workspace.url("/event-keys"), headers=workspace.headers)).get_json()
    first_used = listed["data"][0]["last_used_at"]
    assert first_used is not None
    # Moves again once a few seconds have passed, not on every event.
    await client.post("/v1/track", json={"event": "x", "userId": "u"}, headers={"X-Write-Key": source["key"]})
    listed = await (await client.get(workspace.url("/event-keys"), headers=workspace.headers)).get_json()
    assert listed["data"][0]["last_used_at"] == first_used
    await asyncio.sleep(5.1)
    await client.post("/v1/track", json={"event": "x", "userId": "u"}, headers={"X-Write-Key": source["key"]})
    listed = await (await client.get(workspace.url("/event-keys"), headers=workspace.headers)).get_json()
    assert parse_iso(listed["data"][0]["last_used_at"]) > parse_iso(first_used)


# --- group commit ----------------------------------------------------------------------------

async def test_concurrent_requests_share_commits_and_all_land(client, workspace, source, sessions):
    responses = await asyncio.gather(*(
        client.post("/v1/track", json={"event": f"c{i}", "userId": "u"}, headers={"X-Write-Key": source["key"]})
        for i in range(200)))
    ids = [(await r.get_json())["id"] for r in responses]
    assert all(r.status_code == 200 for r in responses) and len(set(ids)) == 200
    async with sessions() as session:
        count = await session.scalar(select(func.count()).select_from(Event).where(Event.id.in_(ids)))
    assert count == 200


async def test_commit_announces_on_the_pubsub_topic(client, workspace, source, settings):
    import asyncpg

    conn = await asyncpg.connect(settings.database_url)
    heard: asyncio.Queue = asyncio.Queue()
    await conn.add_listener(source["pubsub_topic"], lambda *args: heard.put_nowait(args[3]))
    try:
        answer = await (await client.post("/v1/track", json={"event": "x", "userId": "u"},
                                          headers={"X-Write-Key": source["key"]})).get_json()
        payload = orjson.loads(await asyncio.wait_for(heard.get(), 5))
        assert payload == {"count": 1, "last_id": answer["id"], "ids": [answer["id"]]}
        # A batch's ids are announced 200 to a NOTIFY (payloads hold at most 8,000 bytes).
        batch = [{"type": "track", "event": "x", "userId": "u"} for _ in range(450)]
        answer = await (await client.post("/v1/batch", json={"batch": batch},
                                          headers={"X-Write-Key": source["key"]})).get_json()
        payloads = [orjson.loads(await asyncio.wait_for(heard.get(), 5)) for _ in range(3)]
        assert [p["count"] for p in payloads] == [200, 200, 50]
        assert [i for p in payloads for i in p["ids"]] == sorted(answer["ids"])
    finally:
        await conn.close()


@pytest.mark.parametrize("message", [
    {"type": "track", "event": "e", "userId": "u", "properties": {"a": 1}, "sentAt": "2024-01-01T00:00:00Z"},
    {"type": "page", "name": "Home", "anonymousId": "a", "properties": {}},
    {"type": "identify", "userId": "u", "traits": {"plan": "pro"}},
    {"type": "group", "userId": "u", "groupId": "g"},
    {"type": "alias", "userId": "u", "previousId": "p"},
])
def test_canonical_bodies_come_in_jsonb_key_order(message):
    """Postgres sorts a jsonb object's keys (length, then bytes); bodies sent already sorted
    spare the group commit that sort (models.canonical)."""
    from models.canonical import Arrival, normalize
    from models.ids import new_event_id
    from models.timestamps import utcnow

    body = normalize(message, event_type=None, event_id=new_event_id(),
                     arrival=Arrival(uuid.uuid4(), uuid.uuid4(), utcnow(), "127.0.0.1")).body
    assert list(body) == sorted(body, key=lambda key: (len(key), key))


# --- redaction through the write-key door ---------------------------------------------------

AUDIT = {"type": "audit", "action": "user.invited", "category": "admin", "tenant_id": "acme",
         "actor": {"id": "u_1", "type": "user", "name": "Jane", "email": "jane@example.com"},
         "metadata": {"invitee": "bob@example.org", "note": "call +1 415 555 2671", "plan": "pro"}}
TRACK = {"type": "track", "event": "signed_up", "userId": "u_1",
         "properties": {"email": "bob@example.org", "plan": "pro"},
         "context": {"ip": "203.0.113.9", "traits": {"phone": "+1 415 555 2671"}}}


async def test_audit_events_are_redacted_through_every_door(client, workspace, source):
    key = {"X-Write-Key": source["key"]}
    single = await (await client.post("/v1/events", json=AUDIT, headers=key)).get_json()
    batch = await (await client.post("/v1/batch", json={"batch": [AUDIT, TRACK]}, headers=key)).get_json()
    assert batch["accepted"] == 2
    for event_id in (single["id"], batch["ids"][0]):
        event = await (await client.get(workspace.url(f"/events/{event_id}"), headers=workspace.headers)).get_json()
        assert event["metadata"] == {"invitee": "[REDACTED:email]", "note": "call [REDACTED:phone]", "plan": "pro"}
        assert event["actor"] == {"id": "u_1", "type": "user", "name": "Jane", "email": "[REDACTED:email]"}
    # By default (`audit`) other events are stored as sent.
    track = await (await client.get(workspace.url(f"/events/{batch['ids'][1]}"), headers=workspace.headers)).get_json()
    assert track["properties"]["email"] == "bob@example.org" and track["context"]["ip"] == "203.0.113.9"


async def test_a_source_redacts_all_events_or_none(client, workspace):
    created = await client.post(workspace.url("/event-keys"), json={"name": "Strict", "redact": "all"},
                                headers=workspace.headers)
    assert created.status_code == 201
    strict = await created.get_json()
    assert strict["redact"] == "all"
    ids = (await (await client.post("/v1/batch", json={"batch": [AUDIT, TRACK]},
                                    headers={"X-Write-Key": strict["key"]})).get_json())["ids"]
    track = await (await client.get(workspace.url(f"/events/{ids[1]}"), headers=workspace.headers)).get_json()
    assert track["properties"] == {"email": "[REDACTED:email]", "plan": "pro"}
    assert track["context"]["ip"] == "[REDACTED:ipv4]"
    assert track["context"]["traits"]["phone"] == "[REDACTED:phone]"

    # Turned off, events are stored as sent, on every API process within 2 s.
    response = await client.put(workspace.url(f"/event-keys/{strict['id']}"), json={"redact": "off"},
                                headers=workspace.headers)
    assert response.status_code == 200 and (await response.get_json())["redact"] == "off"
    deadline = time.monotonic() + 2.0

    async def stored_as_sent() -> bool:
        event_id = (await (await client.post("/v1/events", json=AUDIT, headers={"X-Write-Key": strict["key"]}))
                    .get_json())["id"]
        event = await (await client.get(workspace.url(f"/events/{event_id}"), headers=workspace.headers)).get_json()
        return event["metadata"]["invitee"] == "bob@example.org"
    await holds_by(deadline, stored_as_sent, "redact=off")
    bad = await client.put(workspace.url(f"/event-keys/{strict['id']}"), json={"redact": "some"},
                           headers=workspace.headers)
    assert bad.status_code == 422
    bad = await client.put(workspace.url(f"/event-keys/{strict['id']}"), json={"redact": None},
                           headers=workspace.headers)
    assert bad.status_code == 422


async def test_a_nul_in_a_write_key_or_a_filter_is_a_clear_error_not_a_500(client, workspace):
    """Found by schemathesis: a write key holding U+0000 reached Postgres (500)."""
    for path, body in (("/v1/track?writeKey=wk_a%00b", {"event": "e", "userId": "u"}),
                       ("/v1/track", {"event": "e", "userId": "u", "writeKey": "wk_a\u0000b"}),
                       ("/v1/batch", {"batch": [], "writeKey": "\u0000"})):
        response = await client.post(path, json=body)
        assert response.status_code == 401, path
        assert (await response.get_json())["error"]["code"] == "invalid_write_key"
    response = await client.get(workspace.url("/events?name=a%00b"), headers=workspace.headers)
    assert response.status_code == 400 and (await response.get_json())["error"]["code"] == "invalid_string"


async def test_analytics_js_short_paths(client, workspace, source):
    """analytics.js (analytics-next) posts text/plain to /v1/t, /v1/p, ... with the write key in
    the body, and to /v1/b in its batching mode; api.segment.io answers those, so do we."""
    key = source["key"]
    for letter, body in (("t", {"event": "Short Track", "anonymousId": "a-1"}),
                         ("p", {"name": "Home", "anonymousId": "a-1"}),
                         ("i", {"userId": "u-1", "traits": {"plan": "pro"}})):
        response = await client.post(f"/v1/{letter}", data=orjson.dumps({**body, "writeKey": key}),
                                     headers={"Content-Type": "text/plain"})
        assert response.status_code == 200, await response.get_data()
    response = await client.post("/v1/b", data=orjson.dumps({"writeKey": key, "batch": [
        {"type": "track", "event": "Batched", "anonymousId": "a-1"}], "sentAt": "2026-12-03T10:00:00Z"}),
        headers={"Content-Type": "text/plain"})
    assert response.status_code == 200, await response.get_data()
    events = await stored(client, workspace)
    assert sorted((e["type"], e.get("event") or e.get("name") or "") for e in events) == [
        ("identify", ""), ("page", "Home"), ("track", "Batched"), ("track", "Short Track")]
    spec = await (await client.get("/openapi.json")).get_json()
    assert not any(path in spec["paths"] for path in ("/v1/t", "/v1/b"))  # the same doors under other names
