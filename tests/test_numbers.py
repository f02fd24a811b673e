"""Numbers that JSON allows but 64-bit readers round-trip badly: one rule at every door, and no
stored value that can break a read.

The rule (web.jsonio): every finite double, and every integer from -2^63 to 2^64-1, is stored and
read back numerically exact through every read; an integer outside that range is refused at the
door with 400 `number_out_of_range` naming the field (in a batch, that event alone is refused).
"""

from __future__ import annotations

import uuid

import orjson
import pytest
from sqlalchemy import text

from tests.conftest import WorkspaceKey
from tests.sinks import Sink
from tests.test_forwarding import make_destination, make_rule
from tests.test_observe import open_stream

# (JSON literal, the value a reader must see). -0.0 reads back as 0.0: Postgres numbers have no
# negative zero, and the two are equal as numbers.
KEPT = {
    "int64_max": ("9223372036854775807", 2**63 - 1),
    "int64_min": ("-9223372036854775808", -(2**63)),
    "two_to_63": ("9223372036854775808", 2**63),
    "uint64_max": ("18446744073709551615", 2**64 - 1),
    "e20": ("1e20", 1e20),
    "e308": ("1e308", 1e308),
    "neg_e308": ("-1.7976931348623157e308", -1.7976931348623157e308),
    "big_double": ("1.5e300", 1.5e300),
    "tiny_double": ("5e-324", 5e-324),
    "negative_zero": ("-0.0", 0.0),
    "sum": ("0.30000000000000004", 0.1 + 0.2),
    "decimal": ("0.1", 0.1),
    "integral_double": ("2.0", 2.0),
}
REFUSED = {
    "two_to_64": "18446744073709551616",
    "minus_two_to_64": "-18446744073709551616",
    "minus_two_to_63_minus_1": "-9223372036854775809",
    "thirty_digits": "123456789012345678901234567890",
}


def properties_json(numbers: dict[str, str]) -> str:
    return "{" + ",".join(f'"{name}":{literal}' for name, literal in numbers.items()) + "}"


def assert_exact(seen: dict) -> None:
    for name, (_, value) in KEPT.items():
        assert seen[name] == value, (name, seen[name], value)
        assert type(seen[name]) in (int, float)


@pytest.fixture
async def source(client, workspace: WorkspaceKey) -> dict:
    response = await client.post(workspace.url("/event-keys"), json={"name": "Numbers"}, headers=workspace.headers)
    return await response.get_json()


async def post_raw(client, path: str, body: str, headers: dict):
    return await client.post(path, data=body.encode(), headers={"Content-Type": "application/json", **headers})


async def test_integers_out_of_range_are_refused_at_every_ingest_door(client, workspace, source):
    key = {"X-Write-Key": source["key"]}
    for name, literal in REFUSED.items():
        body = f'{{"event":"n","userId":"u","properties":{{"deep":[1,{{"{name}":{literal}}}]}}}}'
        response = await post_raw(client, "/v1/track", body, key)
        assert response.status_code == 400, name
        error = (await response.get_json())["error"]
        assert error["code"] == "number_out_of_range"
        assert error["details"] == {"field": f"properties.deep[1].{name}"}
    # In a batch only the event that holds one is refused; the others are stored.
    body = ('{"batch":[{"type":"track","event":"ok","userId":"u","properties":{"x":1}},'
            '{"type":"track","event":"bad","userId":"u","properties":{"x":18446744073709551616}}]}')
    response = await post_raw(client, "/v1/batch", body, key)
    answer = await response.get_json()
    assert response.status_code == 200 and answer["accepted"] == 1
    assert answer["rejected"][0]["index"] == 1 and answer["rejected"][0]["code"] == "number_out_of_range"
    assert "properties.x" in answer["rejected"][0]["message"]
    response = await post_raw(client, "/v1/batch", '{"context":{"n":-18446744073709551616},"batch":[]}', key)
    assert response.status_code == 400 and (await response.get_json())["error"]["details"] == {"field": "context.n"}
    # A long run of digits that is not a long integer is fine.
    response = await post_raw(client, "/v1/track", '{"event":"n","userId":"u","properties":'
                              '{"pi":3.14159265358979323846264,"s":"12345678901234567890123"}}', key)
    assert response.status_code == 200


async def test_integers_out_of_range_are_refused_by_streams_and_management_calls(client, workspace, token, client_ip):
    body = ('{"action":"user.created","category":"mutation","actor":{"id":"u","type":"user"},'
            '"tenant_id":"t","metadata":{"n":18446744073709551616}}')
    response = await client.post(f"/api/v1/streams/{token}/events", data=body.encode(),
                                 headers={"Content-Type": "application/json"}, scope_base={"client": (client_ip, 1)})
    assert response.status_code == 400
    assert (await response.get_json())["error"]["details"] == {"field": "metadata.n"}
    contract = ('{"name":"big","event_type":"track","event_name":"n","schema_definition":{"type":"object",'
                '"properties":{"x":{"type":"number","maximum":123456789012345678901234567890}}}}')
    response = await post_raw(client, workspace.url("/event-contracts"), contract, workspace.headers)
    assert response.status_code == 400
    assert (await response.get_json())["error"]["details"] == {"field": "schema_definition.properties.x.maximum"}
    # Written as a double, the same bound is kept, and the contracts still list.
    response = await post_raw(client, workspace.url("/event-contracts"), contract.replace(
        "123456789012345678901234567890", "1.2345678901234568e29"), workspace.headers)
    assert response.status_code == 201, await response.get_data()
    listed = await client.get(workspace.url("/event-contracts"), headers=workspace.headers)
    assert listed.status_code == 200
    schema = (await listed.get_json())["data"][0]["schema_definition"]
    assert schema["properties"]["x"]["maximum"] == 1.2345678901234568e29


async def test_awkward_numbers_read_back_exactly_through_every_read(client, workspace, source, api_processes):
    sink = await Sink().start()
    try:
        destination = await make_destination(client, workspace, sink.url)
        await make_rule(client, workspace, destination)
        stream = await open_stream(api_processes[0], workspace)
        try:
            numbers = {name: literal for name, (literal, _) in KEPT.items()}
            body = f'{{"event":"numbers","userId":"u","properties":{properties_json(numbers)}}}'
            response = await post_raw(client, "/v1/track", body, {"X-Write-Key": source["key"]})
            assert response.status_code == 200, await response.get_data()
            event_id = (await response.get_json())["id"]
            batch = f'{{"batch":[{{"type":"track","event":"numbers","userId":"u","properties":{properties_json(numbers)}}}]}}'
            response = await post_raw(client, "/v1/batch", batch, {"X-Write-Key": source["key"]})
            assert (await response.get_json())["accepted"] == 1

            listed = await client.get(workspace.url("/events?name=numbers"), headers=workspace.headers)
            assert listed.status_code == 200
            for event in (await listed.get_json())["data"]:
                assert_exact(event["properties"])
            single = await client.get(workspace.url(f"/events/{event_id}"), headers=workspace.headers)
            assert_exact((await single.get_json())["properties"])
            export = await client.get(workspace.url("/events/export?name=numbers"), headers=workspace.headers)
            lines = (await export.get_data()).splitlines()
            assert len(lines) == 2
            for line in lines:
                assert_exact(orjson.loads(line)["properties"])
            await stream.wait_for(lambda: len(stream.events("track")) >= 2, timeout=15)
            for message in stream.events("track"):
                assert_exact(message["data"]["properties"])
            await sink.wait_for(lambda: len(sink.received) >= 2, timeout=30)
            for request in sink.received:
                assert_exact(request.json()["properties"])
        finally:
            await stream.close()
    finally:
        await sink.stop()


async def test_stream_events_keep_their_numbers_through_the_claim(client, workspace, token, client_ip):
    numbers = {name: literal for name, (literal, _) in KEPT.items()}
    body = ('{"action":"user.created","category":"mutation","actor":{"id":"u","type":"user"},'
            f'"tenant_id":"t","metadata":{properties_json(numbers)}}}')
    response = await client.post(f"/api/v1/streams/{token}/events", data=body.encode(),
                                 headers={"Content-Type": "application/json"}, scope_base={"client": (client_ip, 1)})
    assert response.status_code in (200, 201, 202), await response.get_data()
    response = await client.post("/api/v1/streams/claim", json={"claim_token": token}, headers=workspace.headers)
    assert response.status_code == 200, await response.get_data()
    events = (await (await client.get(workspace.url("/events?type=audit"), headers=workspace.headers)).get_json())
    assert_exact(events["data"][0]["metadata"])


async def test_rows_stored_by_earlier_versions_read_back(client, workspace, sessions):
    """Before the door refused them, an integer past 64 bits could be stored; and jsonb writes a
    large double out in full (1e20 as 100000000000000000000). Neither may break a read."""
    event_id = f"evt_{uuid.uuid4().hex[:26].upper()}"
    body = {"id": event_id, "type": "track", "name": "old", "event": "old", "workspace_id": workspace.id,
            "timestamp": "2026-01-01T00:00:00.000Z", "received_at": "2026-01-01T00:00:00.000Z"}
    literal = orjson.dumps(body).decode()[:-1] + ',"properties":{"huge":123456789012345678901234567890,' \
        '"wide":1e300}}'
    async with sessions() as session, session.begin():
        await session.execute(text(
            "INSERT INTO events (id, workspace_id, type, name, timestamp, received_at, body) "
            "VALUES (:id, :ws, 'track', 'old', '2026-01-01', '2026-01-01', CAST(:body AS jsonb))"),
            {"id": event_id, "ws": workspace.id, "body": literal})
    listed = await client.get(workspace.url("/events"), headers=workspace.headers)
    assert listed.status_code == 200
    properties = (await listed.get_json())["data"][0]["properties"]
    assert properties == {"huge": 1.2345678901234568e29, "wide": 1e300}
    single = await client.get(workspace.url(f"/events/{event_id}"), headers=workspace.headers)
    assert single.status_code == 200
    export = await client.get(workspace.url("/events/export"), headers=workspace.headers)
    assert orjson.loads((await export.get_data()).splitlines()[0])["properties"]["wide"] == 1e300
