"""Transformations: the reference example end to end (create, test, activate), drop, fan-out,
every sandbox attack contained (in the API and on the path forwarding runs), compile errors
with line and column, version pinning, and the automatic `error` status."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import pytest

from activities.sandbox import CompiledTransform, SandboxLimits, TransformSourceError
from activities.sandbox_process import SandboxProcess
from activities.transformations import Transformer
from tests.conftest import WorkspaceKey

# The reference's example, verbatim.
REFERENCE = {
    "name": "Enrich Purchase Events",
    "description": "Add computed fields to purchase events",
    "source_code": "function transform(event) {\n if (event.properties.total > 100) {\n event.properties.tier = "
                   "'high_value';\n }\n return event;\n}",
    "test_input": {"event": "purchase_completed", "properties": {"total": 150}},
    "test_output": {"event": "purchase_completed", "properties": {"total": 150, "tier": "high_value"}},
}
FIELDS = {"id", "workspace_id", "name", "description", "source_code", "test_input", "test_output", "status", "version",
          "last_error", "error_count", "created_at", "updated_at"}

ATTACKS = {
    "infinite loop": ("function transform(e) { while (true) {} }", "ran longer than 100 ms"),
    "memory bomb": ("function transform(e) { const a = []; while (true) a.push(new Array(100000).fill(1)); }",
                    "out of memory"),
    "string doubling": ("function transform(e) { let s = 'x'; while (true) s += s; }", "out of memory"),
    "deep recursion": ("function transform(e) { return transform(e) + 1; }", "stack overflow"),
    "throws a string": ("function transform(e) { throw 'boom'; }", "threw a non-Error value: boom"),
    "throws null": ("function transform(e) { throw null; }", "threw null"),
    "throws an object whose toString throws": (
        "function transform(e) { throw {toString() { throw new Error('no'); }}; }", "threw a non-Error value"),
    "returns a function": ("function transform(e) { return function () {}; }", "got function"),
    "puts a function in the event": ("function transform(e) { e.f = () => 1; return e; }", "a function at \"f\""),
    "returns a cycle": ("function transform(e) { e.self = e; return e; }", "circular"),
    "returns a BigInt": ("function transform(e) { e.n = 10n; return e; }", "a bigint at \"n\""),
    "returns NaN": ("function transform(e) { e.n = 0 / 0; return e; }", "NaN at \"n\""),
    "returns Infinity": ("function transform(e) { e.n = 1 / 0; return e; }", "Infinity at \"n\""),
    "returns a Promise": ("function transform(e) { return Promise.resolve(e); }", "got Promise"),
    "returns a number": ("function transform(e) { return 42; }", "got number"),
}


async def create(client, workspace: WorkspaceKey, **fields) -> dict:
    response = await client.post(workspace.url("/event-transformations"), json={**REFERENCE, **fields},
                                 headers=workspace.headers)
    assert response.status_code == 201, await response.get_data()
    return await response.get_json()


async def put(client, workspace, transformation, **fields):
    return await client.put(workspace.url(f"/event-transformations/{transformation['id']}"), json=fields,
                            headers=workspace.headers)


async def run_test(client, workspace, transformation, body=None) -> dict:
    url = workspace.url(f"/event-transformations/{transformation['id']}/test")
    response = await (client.post(url, json=body, headers=workspace.headers) if body is not None
                      else client.post(url, headers=workspace.headers))
    assert response.status_code == 200, await response.get_data()
    return await response.get_json()


async def get(client, workspace, transformation) -> dict:
    response = await client.get(workspace.url(f"/event-transformations/{transformation['id']}"),
                                headers=workspace.headers)
    assert response.status_code == 200
    return await response.get_json()


async def test_reference_example_create_test_activate(client, workspace):
    created = await create(client, workspace)
    assert set(created) == FIELDS | {"request_id"}
    assert created["status"] == "draft" and created["version"] == 1 and created["error_count"] == 0
    assert created["last_error"] is None and created["source_code"] == REFERENCE["source_code"]

    result = await run_test(client, workspace, created)  # no body: the stored test_input
    assert result["output"] == REFERENCE["test_output"] and result["matches_expected"] is True
    assert result["dropped"] is False and result["error"] is None and result["logs"] == []
    assert 0 <= result["duration_ms"] < 1000

    low = await run_test(client, workspace, created, {"input": {"event": "purchase_completed",
                                                                "properties": {"total": 5}}})
    assert low["output"] == {"event": "purchase_completed", "properties": {"total": 5}}
    assert low["matches_expected"] is False  # compared with the stored test_output

    response = await put(client, workspace, created, status="active")
    assert response.status_code == 200
    active = await response.get_json()
    assert active["status"] == "active" and active["version"] == 2
    listed = await (await client.get(workspace.url("/event-transformations"), headers=workspace.headers)).get_json()
    assert [t["id"] for t in listed["data"]] == [created["id"]] and listed["next_cursor"] is None
    assert (await get(client, workspace, created))["status"] == "active"
    # Code that fails the stored test is refused for an active transformation: no new version.
    refused = await put(client, workspace, created, source_code="function transform(e) { return e; }")
    assert refused.status_code == 422 and (await refused.get_json())["error"]["code"] == "test_failed"
    versions = await (await client.get(workspace.url(f"/event-transformations/{created['id']}/versions"),
                                       headers=workspace.headers)).get_json()
    assert [v["version"] for v in versions["data"]] == [2, 1]
    assert {v["source_code"] for v in versions["data"]} == {REFERENCE["source_code"]}


async def test_activation_refused_when_the_test_does_not_match(client, workspace):
    created = await create(client, workspace, test_output={"event": "purchase_completed", "properties": {"total": 1}})
    response = await put(client, workspace, created, status="active")
    assert response.status_code == 422
    error = (await response.get_json())["error"]
    assert error["code"] == "test_failed"
    assert error["details"]["output"] == {"event": "purchase_completed", "properties": {"total": 150, "tier": "high_value"}}
    after = await get(client, workspace, created)
    assert after["status"] == "draft" and after["version"] == 1  # nothing changed

    # Fixing the expected output makes activation pass; creating active is checked the same way.
    assert (await put(client, workspace, created, status="active", test_output=REFERENCE["test_output"])).status_code == 200
    response = await client.post(workspace.url("/event-transformations"), headers=workspace.headers, json={
        **REFERENCE, "status": "active", "test_output": {"wrong": True}})
    assert response.status_code == 422 and (await response.get_json())["error"]["code"] == "test_failed"
    # Without both test_input and test_output there is nothing to check.
    bare = await create(client, workspace, test_output=None)
    assert (await put(client, workspace, bare, status="active")).status_code == 200
    # An active transformation whose new code breaks its test is refused too.
    response = await put(client, workspace, created, source_code="function transform(e) { return e; }")
    assert response.status_code == 422 and (await response.get_json())["error"]["code"] == "test_failed"
    assert (await get(client, workspace, created))["source_code"] == REFERENCE["source_code"]


async def test_drop_and_fan_out(client, workspace):
    drop = await create(client, workspace, name="drop bots", test_output=None, source_code=(
        "function transform(event) {\n  if (event.context && event.context.bot) return null;\n"
        "  if (event.skip) return undefined;\n  return event;\n}"))
    result = await run_test(client, workspace, drop, {"input": {"event": "x", "context": {"bot": True}}})
    assert result["dropped"] is True and result["output"] is None and result["error"] is None
    assert (await run_test(client, workspace, drop, {"input": {"skip": 1}}))["dropped"] is True
    assert (await run_test(client, workspace, drop, {"input": {"event": "x"}}))["output"] == {"event": "x"}

    fan = await create(client, workspace, name="one per item", test_input={"event": "order", "items": ["a", "b", "c"]},
                       test_output=[{"event": "item", "sku": "a"}, {"event": "item", "sku": "b"},
                                    {"event": "item", "sku": "c"}],
                       source_code="function transform(event, meta) {\n"
                                   "  console.log('fan out', event.items.length, meta.workspace_id);\n"
                                   "  return event.items.map(sku => ({event: 'item', sku}));\n}")
    result = await run_test(client, workspace, fan)
    assert result["output"] == fan["test_output"] and result["matches_expected"] is True
    assert result["logs"] == [f"fan out 3 {workspace.id}"]
    assert (await put(client, workspace, fan, status="active")).status_code == 200
    one = await run_test(client, workspace, fan, {"input": {"items": ["z"]}})
    assert one["output"] == [{"event": "item", "sku": "z"}]  # an array of one stays an array
    assert (await run_test(client, workspace, fan, {"input": {"items": []}}))["dropped"] is True


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_sandbox_attack_is_a_per_event_error(client, workspace, attack):
    source_code, expected = ATTACKS[attack]
    created = await create(client, workspace, name=attack, source_code=source_code, test_output=None)
    started = time.monotonic()
    result = await run_test(client, workspace, created, {"input": {"event": "x"}})
    assert expected in result["error"], result
    assert result["output"] is None and result["dropped"] is False
    assert time.monotonic() - started < 5
    if "ran longer" in expected:
        assert result["duration_ms"] >= 100  # the time it took, not 0
    # The API is still there, and the same transformation runs again (a fresh context if needed).
    assert (await client.get("/healthz")).status_code == 200
    again = await run_test(client, workspace, created, {"input": {"event": "y"}})
    assert expected in again["error"]


def test_sandbox_has_no_host_access():
    probe = CompiledTransform(
        "function transform(e) { return {seen: [typeof require, typeof process, typeof std, typeof os, "
        "typeof setTimeout, typeof setInterval, typeof fetch, typeof XMLHttpRequest, typeof WebAssembly, "
        "typeof print, typeof scriptArgs]}; }")
    assert probe.run({}).events == [{"seen": ["undefined"] * 11}]
    # The code cannot reach the wrapper either: replacing globals changes nothing for the caller.
    sneaky = CompiledTransform("function transform(e) { JSON.stringify = () => '\"pwned\"'; "
                               "globalThis.__headwater_bind = null; console.log = null; return e; }")
    assert sneaky.run({"a": 1}).events == [{"a": 1}] and sneaky.run({"a": 2}).events == [{"a": 2}]


async def test_limits_are_configurable(sandbox):
    code = "function transform(e) { const a = []; for (let i = 0; i < e.n; i++) a.push(new Array(100).fill(i)); " \
           "return {n: a.length}; }"
    slow = "function transform(e) { const end = Date.now() + e.ms; while (Date.now() < end) {} return e; }"
    [fits], _ = await sandbox.transform(("limits", 1), code, [{"n": 4000}], {})  # ~4 MiB of 16
    assert fits.events == [{"n": 4000}]
    [in_time], _ = await sandbox.transform(("slow", 1), slow, [{"ms": 30}], {})
    assert in_time.error is None
    small = SandboxProcess(SandboxLimits(memory_bytes=2 * 1024 * 1024, time_ms=10))
    try:
        [too_big], _ = await small.transform(("limits", 1), code, [{"n": 4000}], {})
        # quickjs may fail to build the out-of-memory error's message and throw a bare `Error`.
        assert "out of memory (limit 2 MiB)" in too_big.error or "crashed" in too_big.error \
            or too_big.error == "Error", too_big.error
        [too_slow], _ = await small.transform(("slow", 1), slow, [{"ms": 30}], {})
        assert "longer than 10 ms" in too_slow.error
    finally:
        small.close()


@pytest.mark.parametrize("source_code, line, column, message", [
    ("function transform(event) {\n  return event +;\n}", 2, 17, "unexpected token in expression: ';'"),
    ("function transform(e) {\n  const x = {a: 1,,};\n  return e;\n}", 2, 19, "invalid property name"),
    ("functio transform(e) { return e; }", 1, 9, "expecting ';'"),
    ("function transform(e) {\n  return e;\n", 3, 1, "unexpected end of input"),
    ("function transform(e) { return e;", 1, 34, "unexpected end of input"),
    ("function transform(e) { return e; }}", 1, 36, "unexpected token in expression: '}'"),
])
async def test_syntax_errors_are_refused_with_line_and_column(client, workspace, source_code, line, column, message):
    response = await client.post(workspace.url("/event-transformations"), headers=workspace.headers,
                                 json={"name": "broken", "source_code": source_code})
    assert response.status_code == 422
    error = (await response.get_json())["error"]
    assert error["code"] == "invalid_source_code"
    assert error["details"] == [{"field": "source_code", "line": line, "column": column,
                                 "message": f"SyntaxError: {message} (line {line}, column {column})"}]
    assert f"line {line}, column {column}" in error["message"]


@pytest.mark.parametrize("source_code, expected", [
    ("function transfrm(e) { return e; }", "must define function transform"),
    ("var transform = 3;", "must define function transform"),
    ("throw new Error('top level');", "failed while loading: Error: top level"),
    ("while (true) {}", "failed while loading: InternalError: interrupted"),
])
async def test_code_without_a_working_transform_is_refused(client, workspace, source_code, expected):
    created = await create(client, workspace, test_output=None)
    for response in (await client.post(workspace.url("/event-transformations"), headers=workspace.headers,
                                       json={"name": "x", "source_code": source_code}),
                     await put(client, workspace, created, source_code=source_code)):
        assert response.status_code == 422
        error = (await response.get_json())["error"]
        assert error["code"] == "invalid_source_code" and expected in error["message"]
    assert (await get(client, workspace, created))["version"] == 1


async def test_validation_and_not_found(client, workspace, other_workspace):
    for body in ({"source_code": "function transform(e) { return e; }"}, {"name": "x"},
                 {"name": "x", "source_code": "function transform(e) { return e; }", "status": "error"},
                 {"name": "x", "source_code": "function transform(e) { return e; }", "test_input": [1]},
                 {"name": "x", "source_code": "function transform(e) { return e; }", "surprise": 1}):
        response = await client.post(workspace.url("/event-transformations"), json=body, headers=workspace.headers)
        assert response.status_code == 422, body
    created = await create(client, workspace, test_input=None, test_output=None)
    response = await client.post(workspace.url(f"/event-transformations/{created['id']}/test"), headers=workspace.headers)
    assert response.status_code == 422 and (await response.get_json())["error"]["code"] == "no_test_input"
    response = await client.post(workspace.url(f"/event-transformations/{created['id']}/test"),
                                 json={"input": "text"}, headers=workspace.headers)
    assert response.status_code == 422
    assert (await put(client, workspace, created, name=None)).status_code == 422
    # Another workspace's master key sees nothing; unknown ids are 404.
    assert (await client.get(other_workspace.url(f"/event-transformations/{created['id']}"),
                             headers=other_workspace.headers)).status_code == 404
    for path in (f"/event-transformations/{uuid.uuid4()}", "/event-transformations/not-a-uuid"):
        assert (await client.get(workspace.url(path), headers=workspace.headers)).status_code == 404
    url = workspace.url(f"/event-transformations/{created['id']}")
    assert (await client.delete(url, headers=workspace.headers)).status_code == 204
    assert (await client.get(url, headers=workspace.headers)).status_code == 404


async def test_every_update_is_a_version_and_a_batch_keeps_the_version_it_started_with(
        client, workspace, sessions, sandbox, settings):
    created = await create(client, workspace, test_output=None,
                           source_code="function transform(e) { e.version = 1; return e; }")
    transformer = Transformer(sessions, sandbox, settings)
    in_flight = await transformer.snapshot(uuid.UUID(created["id"]))
    assert in_flight.version == 1

    updated = await (await put(client, workspace, created, source_code="function transform(e) { e.version = 2; return e; }")).get_json()
    assert updated["version"] == 2
    renamed = await (await put(client, workspace, created, name="renamed")).get_json()
    assert renamed["version"] == 3 and renamed["source_code"].endswith("e.version = 2; return e; }")

    # The batch that took version 1 finishes with it; the next batch runs the current version.
    events = [{"id": f"evt_{i}", "source_id": None} for i in range(3)]
    outcomes = await transformer.run(in_flight, events, {"workspace_id": str(workspace.id)})
    assert [o.events[0]["version"] for o in outcomes] == [1, 1, 1]
    current = await transformer.snapshot(uuid.UUID(created["id"]))
    assert current.version == 3
    assert [o.events[0]["version"] for o in await transformer.run(current, events, {})] == [2, 2, 2]
    assert (await run_test(client, workspace, created, {"input": {}}))["output"] == {"version": 2}


async def test_many_consecutive_failures_set_error_status_and_new_code_makes_it_draft(
        client, workspace, sessions, sandbox, settings):
    threshold = settings.transform_error_threshold
    created = await create(client, workspace, test_output=None, source_code=(
        "function transform(event) { return {total: event.properties.total * 2}; }"))
    transformer = Transformer(sessions, sandbox, settings)
    snapshot = await transformer.snapshot(uuid.UUID(created["id"]))
    good = {"properties": {"total": 1}, "source_id": None}
    bad = {"source_id": None}  # no properties: TypeError

    # Failures interrupted by a success do not add up.
    await transformer.run(snapshot, [bad] * (threshold - 1) + [good] + [bad] * (threshold - 1), {})
    state = await get(client, workspace, created)
    assert state["status"] == "draft" and state["error_count"] == 2 * (threshold - 1)
    assert "TypeError" in state["last_error"]
    # One more failure in a row (in the next batch) reaches the threshold.
    await transformer.run(snapshot, [bad], {})
    state = await get(client, workspace, created)
    assert state["status"] == "error" and state["error_count"] == 2 * threshold - 1
    assert state["last_error"].startswith("TypeError: cannot read property 'total' of undefined")

    # Fixing the code makes it draft again; old-version failures no longer count.
    fixed = await (await put(client, workspace, created, source_code=(
        "function transform(event) { return {total: ((event.properties || {}).total || 0) * 2}; }"))).get_json()
    assert fixed["status"] == "draft" and fixed["version"] == 2
    await transformer.run(snapshot, [bad] * threshold, {})  # a batch still on version 1
    assert (await get(client, workspace, created))["status"] == "draft"
    current = await transformer.snapshot(uuid.UUID(created["id"]))
    assert [o.events for o in await transformer.run(current, [bad, good], {})] == [[{"total": 0}], [{"total": 2}]]


async def test_a_test_run_stopped_by_the_watchdog_answers_its_duration(client, workspace):
    """A regular expression that backtracks without checking quickjs's time limit: the watchdog
    kills the child after the limit and its grace, and the test says how long that took."""
    created = await create(client, workspace, name="regex", test_output=None, source_code=(
        "function transform(e) { return {r: /(a+)+$/.test('a'.repeat(30) + 'b')}; }"))
    result = await run_test(client, workspace, created, {"input": {"event": "x"}})
    assert "ran longer than 100 ms and was stopped" in result["error"]
    assert result["duration_ms"] >= 1000, result  # the limit twice over, and the grace


async def test_sandbox_process_contains_every_attack_and_keeps_going(sandbox):
    """What forwarding runs: an attack fails its own event only. Including what quickjs itself
    does not contain: a regular expression that backtracks for ~30 s without checking the time
    limit (the watchdog kills the child), and out-of-memory paths where quickjs may crash."""
    code = ("function transform(e) {\n"
            "  if (e.attack === 'loop') while (true) {}\n"
            "  if (e.attack === 'memory') { const a = []; while (true) a.push(new Array(1e5).fill(1)); }\n"
            "  if (e.attack === 'strings') { const a = []; for (let i = 0; i < 1e6; i++) a.push('x'.repeat(1024)); }\n"
            "  if (e.attack === 'regex') return {r: /(a+)+$/.test('a'.repeat(30) + 'b')};\n"
            "  if (e.attack === 'recursion') return transform(e);\n"
            "  if (e.attack === 'throw') throw 'no';\n"
            "  if (e.attack === 'cycle') { e.self = e; }\n"
            "  e.ok = true; return e;\n}")
    events = [{"n": 0}, {"attack": "loop"}, {"n": 1}, {"attack": "memory"}, {"n": 2}, {"attack": "regex"},
              {"n": 3}, {"attack": "recursion"}, {"attack": "strings"}, {"n": 4}, {"attack": "throw"},
              {"attack": "cycle"}, {"n": 5}]
    started = time.monotonic()
    outcomes, _ = await sandbox.transform((str(uuid.uuid4()), 1), code, events, {"rule_id": "r"})
    assert time.monotonic() - started < 10
    assert [o.error is None for o in outcomes] == ["n" in e for e in events]
    assert [o.events[0]["n"] for o in outcomes if o.error is None] == [0, 1, 2, 3, 4, 5]
    assert "ran longer than 100 ms and was stopped" in outcomes[5].error  # the regex: killed
    # The process is back for the next batch.
    again, _ = await sandbox.transform((str(uuid.uuid4()), 1), code, [{"n": 9}], {})
    assert again[0].events == [{"n": 9, "ok": True}]


async def test_a_crashing_sandbox_fails_only_its_event():
    """quickjs sometimes segfaults when it runs out of memory near a small limit; the child
    dies, that event gets the error, the rest of the batch is run again in a fresh child."""
    # A generous time limit: on a loaded machine the allocation loop must not be stopped for time.
    sandbox = SandboxProcess(SandboxLimits(memory_bytes=2 * 1024 * 1024, time_ms=5000))
    try:
        code = ("function transform(e) { if (e.big) { const a = []; "
                "for (let i = 0; i < 4000; i++) a.push('x'.repeat(1024)); } return e; }")
        events = [{"n": i, "big": i % 5 == 4} for i in range(30)]
        outcomes, _ = await sandbox.transform(("crash", 1), code, events, {})
        assert [o.error is None for o in outcomes] == [not e["big"] for e in events]
        assert [o.events[0]["n"] for o in outcomes if o.error is None] == [e["n"] for e in events if not e["big"]]
        # Whether quickjs crashed (the child died) or threw, the batch came back whole.
        # Out of memory, quickjs may throw an Error it had no memory left to give a message: a
        # bare "Error" (seen on a loaded machine) is that event's error too.
        errors = [o.error for o in outcomes if o.error]
        assert all(("out of memory" in e or "crashed" in e or "not run" in e or e == "Error") for e in errors), errors
    finally:
        sandbox.close()


async def test_a_child_killed_mid_batch_costs_one_event():
    """The child dying mid-batch (here: SIGSEGV from outside, while event 3 runs) fails the
    event it was running; the events before and after it come back transformed."""
    sandbox = SandboxProcess()
    try:
        code = ("function transform(e) { if (e.wait) { const end = Date.now() + 50; while (Date.now() < end) {} } "
                "e.ok = true; return e; }")
        events = [{"n": i, "wait": i == 3} for i in range(8)]

        async def kill_during_event_3() -> None:
            # the child's progress is shared memory: nothing to await but time
            while sandbox.pid is None or sandbox._progress is None or sandbox._progress.value < 3:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
            os.kill(sandbox.pid, signal.SIGSEGV)

        killer = asyncio.create_task(kill_during_event_3())
        outcomes, _ = await sandbox.transform(("killed", 1), code, events, {})
        await killer
        assert sandbox.deaths == 1
        assert "the sandbox process crashed (signal SIGSEGV)" in outcomes[3].error
        assert [o.events for i, o in enumerate(outcomes) if i != 3] == [
            [{"n": i, "wait": False, "ok": True}] for i in range(8) if i != 3]
    finally:
        sandbox.close()


async def test_meta_carries_source_workspace_and_rule(sandbox):
    outcomes, _ = await sandbox.transform(
        ("meta-test", 1), "function transform(e, meta) { return {meta}; }",
        [{"source_id": "s1"}, {"source_id": "s2"}, {"source_id": "s1"}], {"workspace_id": "w", "rule_id": "r"})
    assert [o.events[0]["meta"] for o in outcomes] == [
        {"workspace_id": "w", "rule_id": "r", "source_id": s} for s in ("s1", "s2", "s1")]


async def test_compile_errors_outside_the_api(sandbox):
    with pytest.raises(TransformSourceError) as caught:
        await sandbox.check("function transform(e) {\n  return e +;\n}")
    assert (caught.value.line, caught.value.column) == (2, 13)
