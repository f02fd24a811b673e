"""Seeing what flows: exact hourly volume (mixed ingestion, a claim, hour boundaries, bounds),
the NDJSON export past one page, the events filters, and the live SSE stream (delivery,
filters, keep-alive, token auth, sampling with `dropped`, disconnect cleanup, two API
processes)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import orjson
import pytest
from sqlalchemy import select, text

from models.canonical import Arrival, normalize
from models.events import commit_events
from models.ids import new_event_id
from models.pubsub import pubsub_topic, pubsub_topic_sql
from models.workspaces import MasterKey
from tests.conftest import ApiProcess, WorkspaceKey
from web.live import sign_live_token


@pytest.fixture
async def source(client, workspace: WorkspaceKey) -> dict:
    response = await client.post(workspace.url("/event-keys"), json={"name": "Web"}, headers=workspace.headers)
    return await response.get_json()


async def volume(client, workspace, query: str = "") -> list[dict]:
    response = await client.get(workspace.url(f"/events/volume{query}"), headers=workspace.headers)
    assert response.status_code == 200, await response.get_data()
    return await response.get_json()


async def commit_at(settings, workspace: WorkspaceKey, received_at: datetime, message: dict, count: int = 1) -> None:
    """Store events through the group commit's statement with a chosen `received_at`."""
    arrival = Arrival(uuid.UUID(workspace.id), None, received_at, "127.0.0.1")
    events = [normalize(dict(message), event_type=None, event_id=new_event_id(), arrival=arrival) for _ in range(count)]
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await commit_events(conn, events)
    finally:
        await conn.close()


def hour(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:00:00Z")


async def test_volume_is_exact_after_mixed_ingestion_and_a_claim(client, workspace, source, client_ip):
    batch = ([{"type": "track", "event": "purchase", "userId": "u"}] * 3
             + [{"type": "track", "event": "signup", "userId": "u"}] * 2
             + [{"type": "identify", "userId": "u", "traits": {"plan": "pro"}}]
             + [{"type": "page", "name": "Home", "userId": "u"}]
             + [{"type": "track", "event": "purchase", "userId": "u", "messageId": "same"}] * 2)  # one duplicate
    response = await client.post("/v1/batch", json={"batch": batch}, headers={"X-Write-Key": source["key"]})
    assert response.status_code == 200
    await client.post("/v1/track", json={"event": "signup", "userId": "v"}, headers={"X-Write-Key": source["key"]})

    token = str(uuid.uuid4())
    for action in ("user.created", "user.created", "doc.shared"):
        response = await client.post(f"/api/v1/streams/{token}/events", scope_base={"client": (client_ip, 1)},
                                     json={"action": action, "category": "mutation",
                                           "actor": {"id": "a", "type": "user"}, "tenant_id": "t"})
        assert response.status_code in (200, 201), await response.get_data()
    response = await client.post("/api/v1/streams/claim", json={"claim_token": token}, headers=workspace.headers)
    assert response.status_code == 200, await response.get_data()

    rows = await volume(client, workspace)
    now = datetime.now(UTC)
    assert {r["hour_bucket"] for r in rows} <= {hour(now), hour(now - timedelta(hours=1))}  # an hour may turn
    counts = Counter()
    for r in rows:
        counts[(r["event_type"], r["event_name"])] += r["event_count"]
    assert counts == {("track", "purchase"): 4, ("track", "signup"): 3, ("identify", None): 1, ("page", "Home"): 1,
                      ("audit", "user.created"): 2, ("audit", "doc.shared"): 1}
    # Exact: the same as counting the stored events themselves.
    stored = (await (await client.get(workspace.url("/events?limit=1000"), headers=workspace.headers)).get_json())["data"]
    assert sum(counts.values()) == len(stored) == 12
    assert rows == sorted(rows, key=lambda r: (r["hour_bucket"], r["event_type"], r["event_name"] or ""))


async def test_hour_boundaries(client, workspace, settings):
    current = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    previous = current - timedelta(hours=1)
    message = {"type": "track", "event": "tick", "userId": "u"}
    await commit_at(settings, workspace, previous - timedelta(milliseconds=1), message)      # hour −2
    await commit_at(settings, workspace, previous, message, count=2)                        # hour −1, first ms
    await commit_at(settings, workspace, current - timedelta(milliseconds=1), message, count=3)  # hour −1, last ms
    await commit_at(settings, workspace, current, message, count=4)                         # this hour, first ms

    assert [(r["hour_bucket"], r["event_count"]) for r in await volume(client, workspace, "?hours=3")] == [
        (hour(previous - timedelta(hours=1)), 1), (hour(previous), 5), (hour(current), 4)]
    assert [(r["hour_bucket"], r["event_count"]) for r in await volume(client, workspace, "?hours=2")] == [
        (hour(previous), 5), (hour(current), 4)]
    assert [r["hour_bucket"] for r in await volume(client, workspace, "?hours=1")] == [hour(current)]
    assert (await volume(client, workspace, "?hours=1"))[0] == {
        "event_type": "track", "event_name": "tick", "hour_bucket": hour(current), "event_count": 4}


async def test_hours_bounds(client, workspace, settings):
    now = datetime.now(UTC)
    oldest_hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=719)  # of 720
    await commit_at(settings, workspace, now - timedelta(hours=30), {"type": "track", "event": "old", "userId": "u"})
    await commit_at(settings, workspace, oldest_hour, {"type": "track", "event": "ancient", "userId": "u"})
    await commit_at(settings, workspace, oldest_hour - timedelta(milliseconds=1),
                    {"type": "track", "event": "too-old", "userId": "u"})
    await commit_at(settings, workspace, now, {"type": "track", "event": "new", "userId": "u"})
    assert [r["event_name"] for r in await volume(client, workspace)] == ["new"]  # default: 24 hours
    assert [r["event_name"] for r in await volume(client, workspace, "?hours=48")] == ["old", "new"]
    assert [r["event_name"] for r in await volume(client, workspace, "?hours=720")] == ["ancient", "old", "new"]
    for bad in ("0", "721", "-1", "x", "1.5"):
        response = await client.get(workspace.url(f"/events/volume?hours={bad}"), headers=workspace.headers)
        assert response.status_code == 400, bad
        assert (await response.get_json())["error"]["code"] == "invalid_query"
    assert (await client.get(workspace.url("/events/volume"))).status_code == 401


async def test_export_streams_more_than_a_page(client, workspace, source):
    from web.events import EXPORT_PAGE

    total = EXPORT_PAGE * 2 + 300
    for offset in range(0, total, 1300):
        batch = [{"type": "track", "event": "bulk" if i % 10 else "tenth", "userId": f"u{i}", "properties": {"i": i}}
                 for i in range(offset, min(offset + 1300, total))]
        response = await client.post("/v1/batch", json={"batch": batch}, headers={"X-Write-Key": source["key"]})
        assert (await response.get_json())["accepted"] == len(batch)
    response = await client.get(workspace.url("/events/export"), headers=workspace.headers)
    assert response.status_code == 200 and response.content_type == "application/x-ndjson"
    lines = (await response.get_data()).splitlines()
    events = [orjson.loads(line) for line in lines]
    assert len(events) == total
    assert [e["properties"]["i"] for e in events] == list(range(total))  # oldest first, nothing twice
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    tenth = await client.get(workspace.url("/events/export?name=tenth"), headers=workspace.headers)
    assert len((await tenth.get_data()).splitlines()) == total // 10
    bad = await client.get(workspace.url("/events/export?cursor=nonsense"), headers=workspace.headers)
    assert bad.status_code == 400


async def test_events_filters_and_cursor(client, workspace, source):
    other = await (await client.post(workspace.url("/event-keys"), json={"name": "Other"},
                                     headers=workspace.headers)).get_json()
    await client.post("/v1/batch", headers={"X-Write-Key": source["key"]}, json={"batch": [
        {"type": "track", "event": "a", "userId": "u1"}, {"type": "track", "event": "b", "anonymousId": "anon"},
        {"type": "identify", "userId": "u1"}]})
    await client.post("/v1/track", json={"event": "a", "userId": "u2"}, headers={"X-Write-Key": other["key"]})

    async def ids(query: str) -> list[str]:
        body = await (await client.get(workspace.url(f"/events?{query}"), headers=workspace.headers)).get_json()
        return [e.get("event") or e["type"] for e in body["data"]]

    assert await ids("type=track") == ["a", "b", "a"]
    assert await ids("name=a") == ["a", "a"]
    assert await ids(f"source_id={other['id']}") == ["a"]
    assert await ids("user_id=u1") == ["identify", "a"]
    assert await ids("anonymous_id=anon") == ["b"]
    assert await ids("until=2000-01-01T00:00:00Z") == []
    first = await (await client.get(workspace.url("/events?limit=3"), headers=workspace.headers)).get_json()
    rest = await (await client.get(workspace.url(f"/events?limit=3&cursor={first['next_cursor']}"),
                                   headers=workspace.headers)).get_json()
    assert len(first["data"]) == 3 and len(rest["data"]) == 1 and rest["next_cursor"] is None


# --- live ------------------------------------------------------------------------------------

class SSE:
    """A live-stream client on a real API process: collects (event, id, data) messages and
    keep-alive comments in the background."""

    def __init__(self, base_url: str, path: str, headers: dict[str, str] | None = None) -> None:
        self.messages: list[dict] = []
        self.comments: list[str] = []
        self.status: int | None = None
        self.opened = asyncio.Event()
        self._client = httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(30, read=None))
        self._task = asyncio.create_task(self._run(path, headers or {}))

    async def _run(self, path: str, headers: dict[str, str]) -> None:
        async with self._client.stream("GET", path, headers=headers) as response:
            self.status = response.status_code
            self.opened.set()
            if response.status_code != 200:
                self.body = orjson.loads(await response.aread())
                return
            message: dict = {}
            async for line in response.aiter_lines():
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                elif line == "":
                    if "data" in message:  # not the `retry:` preamble
                        self.messages.append(message)
                    message = {}
                else:
                    field, _, value = line.partition(": ")
                    message[field] = orjson.loads(value) if field == "data" else value

    async def wait_for(self, predicate, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out; have {self.messages} {self.comments}"
            await asyncio.sleep(0.01)

    def events(self, kind: str | None = None) -> list[dict]:
        return [m for m in self.messages if kind is None or m.get("event") == kind]

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._client.aclose()


@pytest.fixture(scope="module")
def live_apis(settings, worker, tmp_path_factory):
    """Two API processes with a short keep-alive and a low per-client rate, to see both."""
    log_dir = tmp_path_factory.mktemp("live-api-logs")
    processes = [ApiProcess(settings, log_dir, HEADWATER_LIVE_KEEPALIVE_SECONDS="0.5",
                            HEADWATER_LIVE_MAX_EVENTS_PER_SECOND="100") for _ in range(2)]
    yield processes
    for process in processes:
        process.stop()


async def live_clients(api: ApiProcess) -> int:
    async with api.client() as http:
        return (await http.get("/healthz")).json()["live_clients"]


async def open_stream(api: ApiProcess, workspace: WorkspaceKey, query: str = "", headers=None) -> SSE:
    stream = SSE(api.base_url, f"/api/v1/workspaces/{workspace.id}/events/live{query}",
                 workspace.headers if headers is None else headers)
    await asyncio.wait_for(stream.opened.wait(), 10)
    if stream.status == 200:
        await stream.wait_for(lambda: "connected" in stream.comments)
    return stream


async def test_live_delivery_across_two_api_processes_with_keepalive_and_cleanup(live_apis, client, workspace, source):
    watcher_api, ingest_api = live_apis
    stream = await open_stream(watcher_api, workspace)
    try:
        assert await live_clients(watcher_api) == 1
        started = time.monotonic()
        async with ingest_api.client() as http:  # ingested through the other process
            sent = (await http.post("/v1/track", json={"event": "purchase", "userId": "u", "properties": {"n": 1}},
                                    headers={"X-Write-Key": source["key"]})).json()
        await stream.wait_for(lambda: stream.events("track"), timeout=1.0)  # within 1 s of its commit
        [message] = stream.events("track")
        assert time.monotonic() - started < 1.0
        assert message["id"] == sent["id"]
        assert message["data"]["id"] == sent["id"] and message["data"]["properties"] == {"n": 1}
        # The canonical form, as the events API returns it.
        stored = await (await client.get(workspace.url(f"/events/{sent['id']}"), headers=workspace.headers)).get_json()
        stored.pop("request_id", None)
        assert message["data"] == stored
        await stream.wait_for(lambda: stream.comments.count("keep-alive") >= 2, timeout=3)
    finally:
        await stream.close()
    deadline = time.monotonic() + 5
    while await live_clients(watcher_api) != 0:  # the disconnect freed it
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def test_live_filters(live_apis, client, workspace, source):
    api = live_apis[0]
    other = await (await client.post(workspace.url("/event-keys"), json={"name": "Other"},
                                     headers=workspace.headers)).get_json()
    streams = {
        "types": await open_stream(api, workspace, "?types=identify,page"),
        "names": await open_stream(api, workspace, "?names=purchase,Home"),
        "source": await open_stream(api, workspace, f"?source_id={other['id']}"),
        "all": await open_stream(api, workspace),
    }
    try:
        await client.post("/v1/batch", headers={"X-Write-Key": source["key"]}, json={"batch": [
            {"type": "track", "event": "purchase", "userId": "u"}, {"type": "track", "event": "signup", "userId": "u"},
            {"type": "identify", "userId": "u"}, {"type": "page", "name": "Home", "userId": "u"}]})
        await client.post("/v1/track", json={"event": "from-other", "userId": "u"}, headers={"X-Write-Key": other["key"]})
        await streams["all"].wait_for(lambda: len(streams["all"].messages) == 5)
        await asyncio.sleep(0.3)

        def seen(name: str) -> list[str]:
            return [m["data"].get("event") or m["data"].get("name") or m["event"] for m in streams[name].messages]

        assert seen("types") == ["identify", "Home"]
        assert seen("names") == ["purchase", "Home"]
        assert seen("source") == ["from-other"]
        assert [m["event"] for m in streams["all"].messages] == ["track", "track", "identify", "page", "track"]
    finally:
        for stream in streams.values():
            await stream.close()


async def test_live_token_auth(live_apis, client, workspace, other_workspace, sessions):
    api = live_apis[1]
    response = await client.post(workspace.url("/events/live-token"), headers=workspace.headers)
    assert response.status_code == 201
    token = (await response.get_json())["token"]
    stream = await open_stream(api, workspace, f"?token={token}", headers={})
    try:
        assert stream.status == 200
    finally:
        await stream.close()

    async with sessions() as session:
        key = (await session.scalars(select(MasterKey).where(MasterKey.workspace_id == uuid.UUID(workspace.id)))).first()
    expired = sign_live_token(key, int(time.time()) - 1)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for query, headers in ((f"?token={expired}", {}), (f"?token={forged}", {}), ("?token=nonsense", {}),
                           ("", {}), ("", {"Authorization": "Bearer mk_wrong"})):
        refused = await open_stream(api, workspace, query, headers=headers)
        assert refused.status == 401, (query, headers)
        await refused.close()
    # A token (or a key) of another workspace does not open this one.
    other_token = (await (await client.post(other_workspace.url("/events/live-token"),
                                            headers=other_workspace.headers)).get_json())["token"]
    for query, headers in ((f"?token={other_token}", {}), ("", other_workspace.headers)):
        refused = await open_stream(api, workspace, query, headers=headers)
        assert refused.status in (401, 404)
        await refused.close()


async def test_live_samples_past_its_rate_and_says_how_many_were_dropped(live_apis, workspace, source):
    api = live_apis[0]
    stream = await open_stream(api, workspace)
    try:
        batch = [{"type": "track", "event": "flood", "userId": "u", "properties": {"i": i}} for i in range(1000)]
        async with api.client() as http:
            assert (await http.post("/v1/batch", json={"batch": batch},
                                    headers={"X-Write-Key": source["key"]})).json()["accepted"] == 1000
            # One more after the bucket refills, so the drop notice is flushed with it.
            await asyncio.sleep(0.5)
            await http.post("/v1/track", json={"event": "after", "userId": "u"}, headers={"X-Write-Key": source["key"]})
        await stream.wait_for(lambda: any(m["data"].get("event") == "after" for m in stream.events("track")))
        delivered = len([m for m in stream.events("track") if m["data"]["event"] == "flood"])
        dropped = sum(m["data"]["count"] for m in stream.events("dropped"))
        assert delivered + dropped == 1000
        assert 50 <= delivered <= 300  # the rate is 100/s (a full bucket to start with)
    finally:
        await stream.close()


async def test_the_pubsub_topic_is_the_same_in_sql_and_in_python(sessions):
    """Statements NOTIFY on `pubsub_topic_sql`; listeners LISTEN on `pubsub_topic`."""
    ids = [uuid.uuid4() for _ in range(5)]
    async with sessions() as session:
        rows = (await session.execute(text(f"SELECT {pubsub_topic_sql('w')} FROM unnest(CAST(:ids AS uuid[])) AS w"),
                                      {"ids": ids})).scalars().all()
    assert rows == [pubsub_topic(w) for w in ids]
