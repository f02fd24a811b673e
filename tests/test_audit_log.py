"""The tamper-evident audit log, end to end: events (track, audit, claimed stream events) sealed
by the `audit-seal` schedule into the workspace's RFC 6962 tree; signed tree heads verified with
the public key; inclusion proofs checked by the Python SDK; consistency between two heads;
`headwater audit verify` on an export, offline; and an event edited (then one deleted) directly
in Postgres, found by the `audit-check` schedule and by `audit verify` on a fresh export."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from headwater.audit import verify_inclusion
from sqlalchemy import text

from audit import merkle, signing
from audit.log import AuditLedger
from models.event_csv import COLUMNS
from models.ids import first_event_id_at
from tests.conftest import WorkspaceKey

CHECK_SCHEDULE = "audit-check"
RETENTION_SCHEDULE = "event-retention"
ROOT_DIR = Path(__file__).resolve().parent.parent


async def get_json(client, workspace: WorkspaceKey, path: str) -> dict:
    response = await client.get(workspace.url(path), headers=workspace.headers)
    assert response.status_code == 200, await response.get_data()
    return await response.get_json()


async def sealed(client, workspace: WorkspaceKey, size: int, timeout: float = 20) -> dict:
    """The tree head once the log has at least `size` leaves (the schedule seals every 2 s here)."""
    deadline = time.monotonic() + timeout
    while True:
        head = await get_json(client, workspace, "/audit/tree-head")
        if head["tree_size"] >= size:
            return head
        assert time.monotonic() < deadline, head
        await asyncio.sleep(0.2)


async def export_lines(client, workspace: WorkspaceKey, tree_size: int) -> list[bytes]:
    response = await client.get(workspace.url(f"/events/export?tree_size={tree_size}"), headers=workspace.headers)
    assert response.status_code == 200
    return (await response.get_data()).split(b"\n")[:-1]


async def send(client, source: dict, n: int, tag: str) -> list[str]:
    response = await client.post("/v1/batch", headers={"X-Write-Key": source["key"]}, json={"batch": [
        {"type": "track", "event": "Audited", "userId": f"u{i}", "properties": {"tag": tag, "n": i, "price": 9.99}}
        for i in range(n)]})
    assert response.status_code == 200
    return (await response.get_json())["ids"]


def run_verify(tmp_path, lines: list[bytes], head: dict, key: dict, *extra: str) -> subprocess.CompletedProcess:
    (tmp_path / "export.ndjson").write_bytes(b"".join(line + b"\n" for line in lines))
    (tmp_path / "head.json").write_text(json.dumps(head))
    (tmp_path / "key.json").write_text(json.dumps(key))
    return subprocess.run([sys.executable, "cli.py", "audit", "verify", str(tmp_path / "export.ndjson"),
                           "--tree-head", str(tmp_path / "head.json"), "--public-key", str(tmp_path / "key.json"),
                           *extra], cwd=ROOT_DIR, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"},
                          check=False)


async def test_sealed_signed_proven_and_verified_offline(client, workspace, tmp_path):
    source = await (await client.post(workspace.url("/event-keys"), json={"name": "a"},
                                      headers=workspace.headers)).get_json()
    key = await get_json(client, workspace, "/audit/public-key")
    assert key["algorithm"] == "ed25519" and len(base64.b64decode(key["public_key"])) == 32
    empty = await get_json(client, workspace, "/audit/tree-head?tree_size=0")
    assert empty["root_hash"] == base64.b64encode(merkle.EMPTY_ROOT).decode()

    first_ids = await send(client, source, 300, "first")  # more than a chunk of 256 leaves
    older = await sealed(client, workspace, 300)
    public_key = base64.b64decode(key["public_key"])
    assert signing.verify(public_key, older)
    assert not signing.verify(public_key, {**older, "tree_size": older["tree_size"] + 1})
    assert older["timestamp"].endswith("Z") and len(older["timestamp"]) == 24

    later_ids = await send(client, source, 40, "later")
    newer = await sealed(client, workspace, 340)
    lines = await export_lines(client, workspace, newer["tree_size"])
    assert len(lines) == newer["tree_size"] == 340
    ids = [json.loads(line)["id"] for line in lines]
    assert set(ids) == set(first_ids + later_ids)
    assert merkle.root_of([merkle.leaf_hash(line) for line in lines]) == base64.b64decode(newer["root_hash"])

    for index in (0, 1, 255, 256, 299, 300, 339):  # inclusion, checked by the SDK
        proof = await get_json(client, workspace, f"/audit/proof?event_id={ids[index]}")
        assert proof["leaf_index"] == index and proof["tree_size"] == 340
        assert verify_inclusion(lines[index], proof, newer)
        assert not verify_inclusion(lines[index].replace(b"9.99", b"0.99"), proof, newer)
    old_proof = await get_json(client, workspace, f"/audit/proof?event_id={ids[10]}&tree_size={older['tree_size']}")
    assert verify_inclusion(lines[10], old_proof, older)

    consistency = await get_json(client, workspace, f"/audit/consistency?first={older['tree_size']}&second=340")
    assert merkle.verify_consistency(older["tree_size"], 340, base64.b64decode(older["root_hash"]),
                                     base64.b64decode(newer["root_hash"]),
                                     [base64.b64decode(p) for p in consistency["proof"]])

    (tmp_path / "older.json").write_text(json.dumps(older))
    (tmp_path / "consistency.json").write_text(json.dumps(consistency))
    ok = run_verify(tmp_path, lines, newer, key, "--older", str(tmp_path / "older.json"),
                    "--consistency", str(tmp_path / "consistency.json"))
    assert ok.returncode == 0 and ok.stdout.startswith("ok: 340 events"), ok.stdout + ok.stderr

    swapped = [lines[1], lines[0], *lines[2:]]
    failed = run_verify(tmp_path, swapped, newer, key)
    assert failed.returncode == 1 and "root hash" in failed.stderr, failed.stderr
    forged = run_verify(tmp_path, lines, {**newer, "timestamp": "2020-01-01T00:00:00.000Z"}, key)
    assert forged.returncode == 1 and "signature" in forged.stderr


async def test_tampering_is_found_by_the_check_and_by_verify(client, workspace, sessions, temporal_env, tmp_path):
    source = await (await client.post(workspace.url("/event-keys"), json={"name": "t"},
                                      headers=workspace.headers)).get_json()
    ids = await send(client, source, 20, "tamper")
    head = await sealed(client, workspace, 20)
    key = await get_json(client, workspace, "/audit/public-key")
    assert run_verify(tmp_path, await export_lines(client, workspace, 20), head, key).returncode == 0

    async with sessions() as session, session.begin():  # what an intruder with database access does
        await session.execute(text("UPDATE events SET body = jsonb_set(body, '{properties,price}', '0.01') "
                                   "WHERE id = :id"), {"id": ids[3]})
        await session.execute(text("DELETE FROM events WHERE id = :id"), {"id": ids[7]})

    await temporal_env.client.get_schedule_handle(CHECK_SCHEDULE).trigger()
    deadline = time.monotonic() + 20
    while (status := await get_json(client, workspace, "/audit/status"))["mismatch_count"] < 2:
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.2)
    found = {m["event_id"]: m["kind"] for m in status["mismatches"]}
    assert found == {ids[3]: "altered", ids[7]: "missing"}
    assert status["check_passes"] >= 1 and status["tree_size"] == 20

    failed = run_verify(tmp_path, await export_lines(client, workspace, 20), head, key)
    assert failed.returncode == 1 and "19 lines" in failed.stderr, failed.stderr


async def test_claimed_stream_events_become_leaves(client, workspace, token):
    event = {"action": "doc.shared", "category": "access", "actor": {"id": "u", "type": "user"}, "tenant_id": "t"}
    assert (await client.post(f"/api/v1/streams/{token}/events", json={"events": [event, event]},
                              headers={"X-Forwarded-For": "10.77.0.1"})).status_code in (200, 201)
    claim = await client.post("/api/v1/streams/claim", json={"claim_token": token}, headers=workspace.headers)
    assert claim.status_code in (200, 202), await claim.get_data()
    head = await sealed(client, workspace, 2)
    lines = await export_lines(client, workspace, head["tree_size"])
    assert {json.loads(line)["type"] for line in lines} == {"audit"}
    proof = await get_json(client, workspace, f"/audit/proof?event_id={json.loads(lines[1])['id']}")
    assert verify_inclusion(lines[1], proof, head)


async def test_bad_questions_get_clear_answers(client, workspace):
    for path, status, code in (
            ("/audit/proof?event_id=evt_nope", 404, "event_not_sealed"),
            ("/audit/proof?event_id=x&tree_size=99", 422, "invalid_tree_size"),
            ("/audit/consistency?first=5&second=1", 422, "invalid_tree_size"),
            ("/audit/tree-head?tree_size=7", 404, "tree_head_not_found"),
            ("/audit/tree-head?tree_size=-1", 400, None),
            ("/events/export?tree_size=1&type=track", 422, "invalid_query")):
        response = await client.get(workspace.url(path), headers=workspace.headers)
        assert response.status_code in (status, 422), (path, response.status_code)
        if code:
            assert (await response.get_json())["error"]["code"] == code, path
    other = uuid.uuid4()
    response = await client.get(f"/api/v1/workspaces/{other}/audit/tree-head", headers=workspace.headers)
    assert response.status_code == 404


async def test_two_sealers_at_once_take_turns(sessions, workspace, client):
    source = await (await client.post(workspace.url("/event-keys"), json={"name": "c"},
                                      headers=workspace.headers)).get_json()
    await send(client, source, 50, "race")
    ledger = AuditLedger(sessions)
    await asyncio.gather(*(ledger.seal(uuid.UUID(workspace.id)) for _ in range(3)))
    head = await sealed(client, workspace, 50)
    lines = await export_lines(client, workspace, head["tree_size"])
    assert merkle.root_of([merkle.leaf_hash(line) for line in lines]) == base64.b64decode(head["root_hash"])


async def test_csv_export_flattens_quotes_and_defuses_formulas(client, workspace):
    source = await (await client.post(workspace.url("/event-keys"), json={"name": "csv", "redact": "off"},
                                      headers=workspace.headers)).get_json()
    tricky = {"type": "audit", "action": "doc.shared", "category": "mutation",
              "actor": {"id": "+15551234", "type": "user", "name": "O'Brien, \"Bob\"\nJr"},
              "tenant_id": "@acme", "target": {"id": "-1", "type": "doc", "name": "=HYPERLINK(\"http://evil\")"},
              "metadata": {"b": 1, "a": [1, 2]}}
    plain = {"type": "track", "event": "Signed Up", "userId": "u-1", "properties": {"plan": "pro"}}
    sent = await client.post("/v1/batch", json={"batch": [tricky, plain]}, headers={"X-Write-Key": source["key"]})
    answer = await sent.get_json()
    assert len(answer["ids"]) == 2, answer
    audit_id, track_id = answer["ids"]

    response = await client.get(workspace.url(f"/events/export?format=csv&source_id={source['id']}"),
                                headers=workspace.headers)
    assert response.status_code == 200 and response.content_type == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"].endswith('.csv"')
    raw = (await response.get_data()).decode()
    assert raw.endswith("\r\n") and "\r\n" in raw
    rows = list(csv.DictReader(io.StringIO(raw, newline="")))
    by_id = {r["id"]: r for r in rows}
    assert list(rows[0]) == list(COLUMNS) and set(by_id) == {audit_id, track_id}
    audit = by_id[audit_id]
    assert audit["target_name"] == "'=HYPERLINK(\"http://evil\")"  # a formula no more
    assert audit["action"] == "doc.shared"
    assert audit["actor_id"] == "'+15551234" and audit["tenant_id"] == "'@acme" and audit["target_id"] == "'-1"
    assert audit["actor_name"] == "O'Brien, \"Bob\"\nJr"  # quoted, comma, quotes and line break intact
    assert audit["type"] == "audit" and audit["category"] == "mutation"
    assert json.loads(audit["metadata"]) == {"a": [1, 2], "b": 1}
    track = by_id[track_id]
    assert track["event"] == "Signed Up" and track["user_id"] == "u-1" and track["action"] == ""
    assert json.loads(track["metadata"]) == {"plan": "pro"}

    only_audit = await client.get(workspace.url(f"/events/export?format=csv&type=audit&source_id={source['id']}"),
                                  headers=workspace.headers)
    assert [r["id"] for r in csv.DictReader(io.StringIO((await only_audit.get_data()).decode(), newline=""))] == [
        audit_id]


async def test_retention_removes_old_events_and_the_log_still_verifies(client, workspace, sessions, temporal_env,
                                                                      tmp_path):
    source = await (await client.post(workspace.url("/event-keys"), json={"name": "r"},
                                      headers=workspace.headers)).get_json()
    old_at = datetime.now(UTC) - timedelta(days=10)  # as a deployment running for a while has them
    prefix = first_event_id_at(old_at)[:14]
    old_ids = [f"{prefix}{i:016d}" for i in range(30)]
    async with sessions() as session, session.begin():
        for i, event_id in enumerate(old_ids):
            body = {"id": event_id, "type": "track", "name": "Old", "event": "Old", "user_id": "u",
                    "workspace_id": workspace.id, "properties": {"i": i}, "timestamp": old_at.isoformat(),
                    "received_at": old_at.isoformat()}
            await session.execute(text(
                "INSERT INTO events (id, workspace_id, type, name, user_id, timestamp, received_at, body) "
                "VALUES (:id, :workspace_id, 'track', 'Old', 'u', :at, :at, CAST(:body AS jsonb))"),
                {"id": event_id, "workspace_id": workspace.id, "at": old_at, "body": json.dumps(body)})
    await sealed(client, workspace, 30)
    fresh_ids = await send(client, source, 5, "fresh")
    before = await sealed(client, workspace, 35)
    key = await get_json(client, workspace, "/audit/public-key")

    for bad in (0, 36_501, "week"):
        response = await client.put(workspace.url(), json={"retention_days": bad}, headers=workspace.headers)
        assert response.status_code in (400, 422), bad
    updated = await client.put(workspace.url(), json={"retention_days": 7}, headers=workspace.headers)
    assert (await updated.get_json())["retention_days"] == 7

    await temporal_env.client.get_schedule_handle(RETENTION_SCHEDULE).trigger()
    deadline = time.monotonic() + 30
    while (status := await get_json(client, workspace, "/audit/status"))["removed_leaves"] < 30:
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.2)
    assert status["removed_leaves"] == 30
    remaining = await get_json(client, workspace, "/events?limit=100")
    assert {e["id"] for e in remaining["data"]} == set(fresh_ids)

    removed = await get_json(client, workspace, "/audit/removed?tree_size=35")
    assert [(r["first_leaf"], r["last_leaf"]) for r in removed["ranges"]] == [(0, 29)]
    assert removed["ranges"][0]["removed_at"].endswith("Z")
    lines = await export_lines(client, workspace, 35)
    assert [json.loads(line)["id"] for line in lines] == fresh_ids
    (tmp_path / "removed.json").write_text(json.dumps(removed))
    ok = run_verify(tmp_path, lines, before, key, "--removed", str(tmp_path / "removed.json"))
    assert ok.returncode == 0, ok.stderr
    assert run_verify(tmp_path, lines, before, key).returncode == 1  # without the removed leaves' hashes

    for index, line in enumerate(lines):  # the remaining events' proofs, against the head from before
        proof = await get_json(client, workspace, f"/audit/proof?event_id={fresh_ids[index]}&tree_size=35")
        assert proof["leaf_index"] == 30 + index and verify_inclusion(line, proof, before)
    await send(client, source, 3, "after")
    after = await sealed(client, workspace, 38)
    consistency = await get_json(client, workspace, f"/audit/consistency?first=35&second={after['tree_size']}")
    assert merkle.verify_consistency(35, after["tree_size"], base64.b64decode(before["root_hash"]),
                                     base64.b64decode(after["root_hash"]),
                                     [base64.b64decode(p) for p in consistency["proof"]])

    await temporal_env.client.get_schedule_handle(CHECK_SCHEDULE).trigger()  # removed is not missing
    deadline = time.monotonic() + 20
    while (status := await get_json(client, workspace, "/audit/status"))["checked_at"] is None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    assert status["mismatch_count"] == 0
    cleared = await client.put(workspace.url(), json={"retention_days": None}, headers=workspace.headers)
    assert (await cleared.get_json())["retention_days"] is None
