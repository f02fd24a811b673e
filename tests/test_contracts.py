"""Contracts: the API, compact and full schemas, every enforcement mode with every undeclared
fields policy, nested objects and arrays, invalid schemas, propagation to another API
process, violation paging and grouping, blocked events kept out of the events API."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from models.timestamps import parse_iso
from tests.conftest import WorkspaceKey, holds_by

PURCHASE = {"properties": {
    "order_id": {"type": "string", "required": True},
    "total": {"type": "number", "required": True},
    "currency": {"type": "string", "required": True, "enum": ["USD", "EUR"]},
}}
GOOD = {"order_id": "o-1", "total": 10.5, "currency": "USD"}
BAD = {"order_id": "o-2", "total": "ten", "currency": "USD"}  # one type_mismatch
STRIPPED = {"order_id": "o-3", "total": 1, "currency": "EUR"}
EXTRA = {**STRIPPED, "coupon": "X"}  # valid, plus an undeclared field


@pytest.fixture
async def source(client, workspace: WorkspaceKey) -> dict:
    response = await client.post(workspace.url("/event-keys"), json={"name": "Web"}, headers=workspace.headers)
    return await response.get_json()


async def create(client, workspace, **fields) -> dict:
    body = {"name": "Purchase", "event_type": "track", "event_name": "purchase_completed",
            "schema_definition": PURCHASE, **fields}
    response = await client.post(workspace.url("/event-contracts"), json=body, headers=workspace.headers)
    assert response.status_code == 201, await response.get_data()
    return await response.get_json()


async def track(client, source, properties, name="purchase_completed"):
    return await client.post("/v1/track", json={"event": name, "userId": "u", "properties": properties},
                              headers={"X-Write-Key": source["key"]})


async def violations(client, workspace, contract, query="") -> list[dict]:
    response = await client.get(workspace.url(f"/event-contracts/{contract['id']}/violations?limit=1000{query}"),
                                headers=workspace.headers)
    assert response.status_code == 200
    return (await response.get_json())["data"]


async def every_violation(client, workspace, contract, *, limit: int) -> list[dict]:
    """All of a contract's violations, newest first, page by page (`limit` a page)."""
    found, cursor = [], None
    while True:
        query = f"/event-contracts/{contract['id']}/violations?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        page = await (await client.get(workspace.url(query), headers=workspace.headers)).get_json()
        found += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


async def stored_names(client, workspace) -> list[dict]:
    body = await (await client.get(workspace.url("/events?limit=1000"), headers=workspace.headers)).get_json()
    return body["data"]


async def test_contract_object_and_crud(client, workspace):
    contract = await create(client, workspace, description="d", enforcement_mode="warn")
    assert set(contract) == {"id", "workspace_id", "name", "description", "event_type", "event_name",
                             "schema_definition", "enforcement_mode", "undeclared_fields", "status", "version",
                             "violation_count", "created_at", "updated_at", "request_id"}
    assert contract["status"] == "active" and contract["undeclared_fields"] == "allow"
    assert contract["schema_definition"] == PURCHASE and contract["violation_count"] == 0
    url = workspace.url(f"/event-contracts/{contract['id']}")
    assert (await (await client.get(url, headers=workspace.headers)).get_json())["name"] == "Purchase"
    updated = await (await client.put(url, json={"enforcement_mode": "block"}, headers=workspace.headers)).get_json()
    assert updated["enforcement_mode"] == "block" and updated["version"] == 2
    listed = await (await client.get(workspace.url("/event-contracts?event_type=track&status=active"),
                                     headers=workspace.headers)).get_json()
    assert [c["id"] for c in listed["data"]] == [contract["id"]]
    assert (await (await client.get(workspace.url("/event-contracts?status=archived"),
                                    headers=workspace.headers)).get_json())["data"] == []
    # One active contract per (event_type, event_name).
    response = await client.post(workspace.url("/event-contracts"), json={
        "name": "again", "event_type": "track", "event_name": "purchase_completed", "schema_definition": PURCHASE},
        headers=workspace.headers)
    assert response.status_code == 409 and (await response.get_json())["error"]["code"] == "contract_exists"
    assert (await client.delete(url, headers=workspace.headers)).status_code == 204
    assert (await client.get(url, headers=workspace.headers)).status_code == 404


async def test_contracts_belong_to_their_workspace(client, workspace, other_workspace):
    contract = await create(client, workspace)
    response = await client.get(other_workspace.url(f"/event-contracts/{contract['id']}"),
                                headers=other_workspace.headers)
    assert response.status_code == 404


@pytest.mark.parametrize("definition, pointer", [
    ({"properties": {"total": {"type": "numbr", "required": True}}}, "/properties/total/type"),
    ({"type": "object", "properties": {"name": {"minLength": -1}}}, "/properties/name/minLength"),
    ({"type": "array"}, "/type"),
    ({"properties": {"total": {"type": "number", "required": "yes"}, "id": {"required": True}}}, "/properties/total/required"),
    ({"$schema": "http://json-schema.org/draft-04/schema#", "type": "object"}, "/$schema"),
])
async def test_invalid_schema_is_refused_saying_where(client, workspace, definition, pointer):
    response = await client.post(workspace.url("/event-contracts"), json={
        "name": "x", "event_type": "track", "event_name": "x", "schema_definition": definition},
        headers=workspace.headers)
    assert response.status_code == 422
    error = (await response.get_json())["error"]
    assert error["code"] == "invalid_schema" and error["details"][0]["pointer"] == pointer


async def test_invalid_schema_update_is_refused_and_changes_nothing(client, workspace):
    contract = await create(client, workspace)
    url = workspace.url(f"/event-contracts/{contract['id']}")
    response = await client.put(url, json={"schema_definition": {"type": "object", "required": "total"}},
                                headers=workspace.headers)
    assert response.status_code == 422
    assert (await (await client.get(url, headers=workspace.headers)).get_json())["version"] == 1


# Every enforcement mode with every undeclared-fields policy, on the same three events:
# valid, a type mismatch, valid plus an undeclared field.
MATRIX = {
    # (mode, undeclared): (stored of [GOOD, BAD, EXTRA], violations (kind, action), EXTRA stored as)
    ("allow", "allow"): ([True, True, True], [], EXTRA),
    ("allow", "warn"): ([True, True, True], [], EXTRA),
    ("allow", "block"): ([True, True, True], [], EXTRA),
    ("allow", "strip"): ([True, True, True], [], STRIPPED),
    ("warn", "allow"): ([True, True, True], [("type_mismatch", "warned")], EXTRA),
    ("warn", "warn"): ([True, True, True], [("type_mismatch", "warned"), ("undeclared_field", "warned")], EXTRA),
    ("warn", "block"): ([True, True, True], [("type_mismatch", "warned"), ("undeclared_field", "warned")], EXTRA),
    ("warn", "strip"): ([True, True, True], [("type_mismatch", "warned")], STRIPPED),
    ("block", "allow"): ([True, False, True], [("type_mismatch", "blocked")], EXTRA),
    ("block", "warn"): ([True, False, True], [("type_mismatch", "blocked"), ("undeclared_field", "warned")], EXTRA),
    ("block", "block"): ([True, False, False], [("type_mismatch", "blocked"), ("undeclared_field", "blocked")], None),
    ("block", "strip"): ([True, False, True], [("type_mismatch", "blocked")], STRIPPED),
}


@pytest.mark.parametrize("mode, undeclared", list(MATRIX))
async def test_enforcement_mode_by_undeclared_fields_policy(client, workspace, source, mode, undeclared):
    stored_expected, expected_violations, extra_as = MATRIX[(mode, undeclared)]
    contract = await create(client, workspace, enforcement_mode=mode, undeclared_fields=undeclared)
    statuses = [(await track(client, source, dict(p))).status_code for p in (GOOD, BAD, EXTRA)]
    assert statuses == [200 if ok else 422 for ok in stored_expected]
    events = await stored_names(client, workspace)
    stored = sorted(e["properties"]["order_id"] for e in events)
    assert stored == sorted(p["order_id"] for p, ok in zip((GOOD, BAD, EXTRA), stored_expected, strict=True) if ok)
    if extra_as is not None:  # the third event, stored as sent or stripped
        [extra] = [e for e in events if e["properties"]["order_id"] == EXTRA["order_id"]] or [None]
        assert extra is not None and extra["properties"] == extra_as
    found = await violations(client, workspace, contract)
    # A warned violation names the stored event; a blocked one has no event.
    assert sorted((v["kind"], v["action"]) for v in found) == sorted(expected_violations)
    for v in found:
        assert (v["event_id"] is None) == (v["action"] == "blocked")
        assert v["contract_id"] == contract["id"] and v["source_id"] == source["id"]
        assert v["event_type"] == "track" and v["event_name"] == "purchase_completed"
    paths = {v["kind"]: v["path"] for v in found}
    if "type_mismatch" in paths:
        assert paths["type_mismatch"] == "/properties/total"
    if "undeclared_field" in paths:
        assert paths["undeclared_field"] == "/properties/coupon"


async def test_blocked_single_event_answers_422_with_its_violations(client, workspace, source):
    await create(client, workspace, enforcement_mode="block")
    response = await track(client, source, {"total": "x"})
    assert response.status_code == 422
    error = (await response.get_json())["error"]
    assert error["code"] == "contract_violation"
    assert sorted((d["kind"], d["path"]) for d in error["details"]) == [
        ("required_missing", "/properties/currency"), ("required_missing", "/properties/order_id"),
        ("type_mismatch", "/properties/total")]
    assert await stored_names(client, workspace) == []


async def test_blocked_events_in_a_batch_are_rejected_and_the_rest_stored(client, workspace, source):
    await create(client, workspace, enforcement_mode="block")
    batch = [{"type": "track", "event": "purchase_completed", "userId": "u", "properties": GOOD},
             {"type": "track", "event": "purchase_completed", "userId": "u", "properties": BAD},
             {"type": "track", "event": "other_event", "userId": "u", "properties": BAD}]  # no contract
    answer = await (await client.post("/v1/batch", json={"batch": batch},
                                      headers={"X-Write-Key": source["key"]})).get_json()
    assert answer["accepted"] == 2 and len(answer["ids"]) == 2
    assert answer["rejected"] == [{"index": 1, "code": "contract_violation",
                                   "message": "the event violates its contract, which blocks it",
                                   "violations": [{"path": "/properties/total", "kind": "type_mismatch",
                                                   "message": "'ten' is not of type 'number'"}]}]
    events = await stored_names(client, workspace)
    assert sorted(e["id"] for e in events) == sorted(answer["ids"])
    assert all(e["properties"] != BAD or e["event"] == "other_event" for e in events)


async def test_full_json_schema_with_nested_objects_and_arrays(client, workspace, source):
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
        "required": ["shipping", "items"],
        "properties": {
            "shipping": {"type": "object", "required": ["city"], "properties": {
                "city": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}}},
            "items": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["sku"], "properties": {"sku": {"type": "string"},
                                                                      "qty": {"type": "integer", "minimum": 1}}}},
            "email": {"type": "string", "format": "email"},
        },
    }
    contract = await create(client, workspace, schema_definition=schema, enforcement_mode="warn",
                            undeclared_fields="warn")
    assert (await track(client, source, {"shipping": {"city": "Oslo", "zip": "01234"},
                                         "items": [{"sku": "a", "qty": 2}], "email": "a@b.co"})).status_code == 200
    assert await violations(client, workspace, contract) == []
    await track(client, source, {"shipping": {"zip": "12"}, "items": [{"qty": 0, "color": "red"}], "email": "nope"})
    found = {(v["path"], v["kind"]) for v in await violations(client, workspace, contract)}
    assert found == {("/properties/shipping/city", "required_missing"), ("/properties/shipping/zip", "other"),
                     ("/properties/items/0/sku", "required_missing"), ("/properties/items/0/qty", "other"),
                     ("/properties/items/0/color", "undeclared_field"), ("/properties/email", "format")}


async def test_compact_schema_with_nested_objects_and_arrays(client, workspace, source):
    compact = {"properties": {
        "shipping": {"required": True, "properties": {"city": {"type": "string", "required": True}}},
        "items": {"type": "array", "items": {"properties": {"sku": {"type": "string", "required": True}}}},
    }}
    contract = await create(client, workspace, schema_definition=compact, enforcement_mode="block",
                            undeclared_fields="strip")
    response = await track(client, source, {"shipping": {"city": "Oslo", "floor": 3}, "items": [{"sku": "a", "x": 1}],
                                            "note": "dropped"})
    assert response.status_code == 200
    [event] = await stored_names(client, workspace)
    assert event["properties"] == {"shipping": {"city": "Oslo"}, "items": [{"sku": "a"}]}
    response = await track(client, source, {"shipping": {}, "items": [{"sku": 5}]})
    assert response.status_code == 422
    found = {(v["path"], v["kind"]) for v in await violations(client, workspace, contract)}
    assert found == {("/properties/shipping/city", "required_missing"), ("/properties/items/0/sku", "type_mismatch")}


async def test_identify_traits_and_audit_metadata_are_checked(client, workspace, source):
    identify = await create(client, workspace, event_type="identify", event_name=None, enforcement_mode="block",
                            schema_definition={"properties": {"email": {"type": "string", "required": True}}})
    response = await client.post("/v1/identify", json={"userId": "u", "traits": {"name": "x"}},
                                 headers={"X-Write-Key": source["key"]})
    assert response.status_code == 422
    assert [v["path"] for v in await violations(client, workspace, identify)] == ["/traits/email"]
    audit = await create(client, workspace, event_type="audit", event_name="user.login", enforcement_mode="warn",
                         schema_definition={"properties": {"method": {"type": "string", "required": True}}})
    response = await client.post("/v1/events", json={
        "type": "audit", "action": "user.login", "category": "auth", "actor": {"id": "u1", "type": "user"},
        "tenant_id": "t1", "metadata": {"method": 2}}, headers={"X-Write-Key": source["key"]})
    assert response.status_code == 200
    assert [(v["path"], v["kind"]) for v in await violations(client, workspace, audit)] == [
        ("/metadata/method", "type_mismatch")]


async def test_archived_contracts_stop_enforcing_and_keep_violations(client, workspace, source):
    contract = await create(client, workspace, enforcement_mode="block")
    assert (await track(client, source, BAD)).status_code == 422
    url = workspace.url(f"/event-contracts/{contract['id']}")
    archived = await (await client.put(url, json={"status": "archived"}, headers=workspace.headers)).get_json()
    assert archived["status"] == "archived" and archived["violation_count"] == 1
    assert (await track(client, source, BAD)).status_code == 200
    assert len(await violations(client, workspace, contract)) == 1
    # A new active contract for the same event can now be created; reactivating the old one is 409.
    await create(client, workspace)
    response = await client.put(url, json={"status": "active"}, headers=workspace.headers)
    assert response.status_code == 409


async def test_violation_paging_filters_and_grouping(client, workspace, source):
    contract = await create(client, workspace, enforcement_mode="warn", undeclared_fields="warn")
    batch = [{"type": "track", "event": "purchase_completed", "userId": "u",
              "properties": {"order_id": f"o{i}", "total": "x", "currency": "USD", "extra": i}} for i in range(30)]
    batch += [{"type": "track", "event": "purchase_completed", "userId": "u", "properties": {"total": 1}}
              for _ in range(5)]
    answer = await (await client.post("/v1/batch", json={"batch": batch},
                                      headers={"X-Write-Key": source["key"]})).get_json()
    assert answer["accepted"] == 35
    assert (await track(client, source, BAD)).status_code == 200  # a second group commit: a second batch
    seen = await every_violation(client, workspace, contract, limit=7)
    assert len(seen) == 30 + 30 + 10 + 1 and len({v["id"] for v in seen}) == len(seen)
    # newest first: across batches, and within one (event ids are in arrival order)
    assert [v["occurred_at"] for v in seen] == sorted((v["occurred_at"] for v in seen), reverse=True)
    assert [v["event_id"] for v in seen] == sorted((v["event_id"] for v in seen), reverse=True)
    assert seen[0]["event_id"] == (await stored_names(client, workspace))[0]["id"]
    assert [v["id"] for v in await violations(client, workspace, contract)] == [v["id"] for v in seen]  # stable
    assert len(await violations(client, workspace, contract, "&kind=undeclared_field")) == 30
    assert len(await violations(client, workspace, contract, "&kind=type_mismatch&path=/properties/total")) == 31
    assert len(await violations(client, workspace, contract, "&path=/properties/currency")) == 5
    assert len(await violations(client, workspace, contract, "&since=2999-01-01T00:00:00Z")) == 0
    groups = await violations(client, workspace, contract, "&group_by=path,kind")
    assert all(parse_iso(g.pop("last_seen")) <= datetime.now(UTC) for g in groups)  # the newest of each group
    assert groups == [
        {"path": "/properties/total", "kind": "type_mismatch", "count": 31},
        {"path": "/properties/extra", "kind": "undeclared_field", "count": 30},
        {"path": "/properties/currency", "kind": "required_missing", "count": 5},
        {"path": "/properties/order_id", "kind": "required_missing", "count": 5},
    ]
    by_kind = {g["kind"]: g["count"] for g in await violations(client, workspace, contract, "&group_by=kind")}
    assert by_kind == {"undeclared_field": 30, "type_mismatch": 31, "required_missing": 10}
    response = await client.get(workspace.url(f"/event-contracts/{contract['id']}/violations?group_by=event_id"),
                                headers=workspace.headers)
    assert response.status_code == 400
    response = await client.get(workspace.url(f"/event-contracts/{contract['id']}/violations?cursor=nope"),
                                headers=workspace.headers)
    assert response.status_code == 400
    count = (await (await client.get(workspace.url(f"/event-contracts/{contract['id']}"),
                                     headers=workspace.headers)).get_json())["violation_count"]
    assert count == 71


async def test_duplicate_events_record_no_second_violation(client, workspace, source):
    contract = await create(client, workspace, enforcement_mode="warn")
    for _ in range(2):
        response = await client.post("/v1/track", json={"event": "purchase_completed", "userId": "u",
                                                        "messageId": "same", "properties": BAD},
                                     headers={"X-Write-Key": source["key"]})
        assert response.status_code == 200
    assert len(await violations(client, workspace, contract)) == 1


async def test_a_batch_records_the_violations_of_its_new_events_not_of_its_duplicates(client, workspace, source):
    contract = await create(client, workspace, enforcement_mode="warn")
    assert (await client.post("/v1/track", json={"event": "purchase_completed", "userId": "u", "messageId": "m1",
                                                 "properties": BAD}, headers={"X-Write-Key": source["key"]})
            ).status_code == 200
    batch = [{"type": "track", "event": "purchase_completed", "userId": "u", "messageId": m, "properties": BAD}
             for m in ("m1", "m2", "m3")]
    answer = await (await client.post("/v1/batch", json={"batch": batch},
                                      headers={"X-Write-Key": source["key"]})).get_json()
    found = await violations(client, workspace, contract)
    assert sorted(v["event_id"] for v in found) == sorted(answer["ids"])  # m1's once, m2's, m3's
    response = await client.get(workspace.url(f"/event-contracts/{contract['id']}"), headers=workspace.headers)
    assert (await response.get_json())["violation_count"] == 3


async def test_more_violations_than_a_batch_holds_are_all_kept_in_order(client, workspace, source):
    from models.contracts import MAX_BATCH_VIOLATIONS

    contract = await create(client, workspace, enforcement_mode="warn", undeclared_fields="warn")
    per_event = 12
    events = MAX_BATCH_VIOLATIONS // per_event + 1  # one request, one group: more than one batch
    batch = [{"type": "track", "event": "purchase_completed", "userId": "u",
              "properties": {**GOOD, **{f"x{k:02}": k for k in range(per_event)}}} for _ in range(events)]
    answer = await (await client.post("/v1/batch", json={"batch": batch},
                                      headers={"X-Write-Key": source["key"]})).get_json()
    assert answer["accepted"] == events
    found = await every_violation(client, workspace, contract, limit=1000)
    assert len(found) == events * per_event > MAX_BATCH_VIOLATIONS
    # newest first: the last event's last undeclared field first, the first event's first last
    expected = [(event_id, f"/properties/x{k:02}") for event_id in reversed(answer["ids"])
                for k in reversed(range(per_event))]
    assert [(v["event_id"], v["path"]) for v in found] == expected
    assert len({v["id"] for v in found}) == len(found)


def test_recorded_violations_become_batches_of_at_most_the_maximum():
    import uuid

    from models.contracts import MAX_BATCH_VIOLATIONS, RecordedViolations

    workspace = uuid.uuid4()
    recorded = RecordedViolations()
    for n in range(MAX_BATCH_VIOLATIONS + 1):
        recorded.add(("c1", workspace, "track"), [(f"evt_{n}", "Order", None, "/p", "enum", "m", "warned")])
    other = RecordedViolations()
    other.add(("c2", workspace, "identify"), [(None, None, None, "/traits/a", "enum", "m", "blocked")])
    merged = RecordedViolations.merged([recorded, RecordedViolations(), other])
    assert len(merged) == MAX_BATCH_VIOLATIONS + 2
    batches = merged.batches()
    assert [(b[0], b[2], len(b[3])) for b in batches] == [
        ("c1", "track", MAX_BATCH_VIOLATIONS), ("c1", "track", 1), ("c2", "identify", 1)]
    assert batches[0][3][0][0] == "evt_0" and batches[1][3][0][0] == f"evt_{MAX_BATCH_VIOLATIONS}"


async def test_deleting_a_workspace_deletes_its_events_and_violations(client, sessions, workspace, other_workspace):
    """The ingest tables have no foreign keys (migration 0008); a trigger keeps the cascade."""
    from sqlalchemy import text

    for ws in (workspace, other_workspace):
        source = await (await client.post(ws.url("/event-keys"), json={"name": "Web"}, headers=ws.headers)).get_json()
        await create(client, ws, enforcement_mode="warn")
        assert (await track(client, source, BAD)).status_code == 200
    count = text("SELECT (SELECT count(*) FROM events WHERE workspace_id = :w) + "
                 "(SELECT count(*) FROM contract_violation_batches WHERE workspace_id = :w)")
    async with sessions() as session, session.begin():
        assert await session.scalar(count, {"w": workspace.id}) == 2
        await session.execute(text("DELETE FROM workspaces WHERE id = :w"), {"w": workspace.id})
    async with sessions() as session:
        assert await session.scalar(count, {"w": workspace.id}) == 0
        assert await session.scalar(count, {"w": other_workspace.id}) == 2


async def test_contract_update_is_seen_by_a_second_api_process_within_2s(api_processes, client, workspace, source):
    contract = await create(client, workspace, enforcement_mode="warn")
    body = {"event": "purchase_completed", "userId": "u", "properties": BAD}
    async with api_processes[0].client() as a, api_processes[1].client() as b:
        for c in (a, b):
            assert (await c.post("/v1/track", json=body, headers={"X-Write-Key": source["key"]})).status_code == 200
        response = await a.put(f"/api/v1/workspaces/{workspace.id}/event-contracts/{contract['id']}",
                               json={"enforcement_mode": "block"}, headers=workspace.headers)
        assert response.status_code == 200
        deadline = time.monotonic() + 2.0
        for c in (a, b):  # each process blocks the event within 2 s of the update
            async def blocked(c=c) -> bool:
                response = await c.post("/v1/track", json=body, headers={"X-Write-Key": source["key"]})
                assert response.status_code in (200, 422)
                return response.json()["error"]["code"] == "contract_violation" if response.status_code == 422 else False
            await holds_by(deadline, blocked, "the block")
