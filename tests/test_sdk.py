"""The Python SDK against the running API (a real hypercorn process), and its retry
behaviour against a real HTTP server on 127.0.0.1 that fails on purpose."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import headwater
import pytest

from tests.conftest import ADMIN_TOKEN

ROOT = Path(__file__).resolve().parent.parent


async def test_the_walk(api_processes):
    """SDK logs 42 events; info says 42; a new workspace claims; it lists the same 42 events,
    redacted; the stream refuses further posts."""
    api = api_processes[0]
    stream = headwater.stream(base_url=api.base_url)
    for i in range(42):
        stream.log(action="document.shared", category="access",
                   actor={"id": f"user_{i % 5}", "type": "user", "email": f"user{i}@example.com"},
                   tenant_id="acme", target={"id": f"doc_{i}", "type": "document"},
                   metadata={"i": i, "shared_with": "bob@example.org", "password": "hunter2"})
    assert await asyncio.to_thread(stream.flush, 30)
    info = await asyncio.to_thread(stream.info)
    assert info["event_count"] == 42 and info["status"] == "active"

    async with api.client() as client:
        signup = await client.post("/api/v1/workspaces", json={"name": "Walkers"},
                                   headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert signup.status_code == 201
        workspace_id = signup.json()["workspace"]["id"]
        auth = {"Authorization": f"Bearer {signup.json()['master_key']}"}

        claimed = await client.post("/api/v1/streams/claim", json={"claim_token": stream.token}, headers=auth)
        assert claimed.status_code == 200, claimed.text
        assert claimed.json()["event_count"] == 42

        listed = (await client.get(f"/api/v1/workspaces/{workspace_id}/events?limit=100", headers=auth)).json()
        events = listed["data"]
        assert len(events) == 42 and listed["next_cursor"] is None
        assert sorted(e["metadata"]["i"] for e in events) == list(range(42))
        for event in events:
            assert event["actor"]["email"] == "[REDACTED:email]"
            assert event["metadata"]["shared_with"] == "[REDACTED:email]"
            assert event["metadata"]["password"] == "[REDACTED:secret]"
            assert event["type"] == "audit" and event["name"] == "document.shared"

        refused = await client.post(f"/api/v1/streams/{stream.token}/events",
                                    json={"action": "a.b", "category": "auth", "actor": {"id": "u", "type": "user"},
                                          "tenant_id": "acme"})
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "stream_claimed"
    await asyncio.to_thread(stream.close)


class FlakyIngest(BaseHTTPRequestHandler):
    """Answers 503, then 429 with Retry-After: 1, then 200; records what it was sent."""

    # one handler object per request: what they share lives on the class
    script: ClassVar[list[tuple[int, dict]]] = [(503, {}), (429, {"Retry-After": "1"})]
    received: ClassVar[list[dict]] = []
    times: ClassVar[list[float]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FlakyIngest.times.append(time.monotonic())
        status, headers = FlakyIngest.script.pop(0) if FlakyIngest.script else (200, {})
        if status == 200:
            FlakyIngest.received.append(body)
        payload = json.dumps({"ids": [], "redacted_count": 0}).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


def test_sdk_retries_5xx_and_429_honouring_retry_after():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyIngest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        stream = headwater.stream(base_url=f"http://127.0.0.1:{server.server_port}", flush_interval=0.05)
        started = time.monotonic()
        for i in range(3):
            stream.log(action="a.b", category="auth", actor={"id": "u", "type": "user"}, tenant_id="t",
                       metadata={"i": i})
        assert time.monotonic() - started < 0.1  # log() never blocks
        assert stream.flush(timeout=20)
        stream.close()
    finally:
        server.shutdown()
    assert len(FlakyIngest.times) == 3
    assert FlakyIngest.times[2] - FlakyIngest.times[1] >= 0.95  # waited for Retry-After
    assert len(FlakyIngest.received) == 1
    events = FlakyIngest.received[0]["events"]
    assert [e["metadata"]["i"] for e in events] == [0, 1, 2]
    assert len({e["idempotency_key"] for e in events}) == 3  # retries cannot duplicate


def test_sdk_never_blocks_when_server_is_down():
    stream = headwater.stream(base_url="http://127.0.0.1:1", flush_interval=0.01, max_queue=5)
    started = time.monotonic()
    for _ in range(10):
        stream.log(action="a.b", category="auth", actor={"id": "u", "type": "user"}, tenant_id="t")
    assert time.monotonic() - started < 0.1
    assert not stream.flush(timeout=0.2)
    stream.close(timeout=0.1)
    assert stream.dropped >= 5


def test_sdk_token_is_uuid4():

    stream = headwater.stream(base_url="http://127.0.0.1:1")
    assert uuid.UUID(stream.token).version == 4
    stream.close(timeout=0)


def test_info_before_the_first_event_says_not_created(api_processes):
    stream = headwater.stream(base_url=api_processes[1].base_url)
    try:
        assert stream.info() == {"claim_token": stream.token, "status": "not_created", "event_count": 0}
    finally:
        stream.close(timeout=0)


def test_a_mistake_is_refused_at_the_call_and_queues_nothing():
    stream = headwater.stream(base_url="http://127.0.0.1:1", flush_interval=0.01)
    good = {"action": "user.created", "category": "mutation", "actor": {"id": "u", "type": "user"},
            "tenant_id": "acme"}
    for bad, words in (({"action": "Created"}, "action"), ({"category": "misc"}, "category"),
                       ({"actor": {"id": "u"}}, "actor"), ({"tenant_id": ""}, "tenant_id"),
                       ({"metadata": ["x"]}, "metadata")):
        with pytest.raises(ValueError, match=words):
            stream.log(**{**good, **bad})
    assert not stream._queue
    stream.close(timeout=0)


async def test_one_event_the_server_refuses_does_not_take_its_batch_with_it(api_processes):
    stream = headwater.stream(base_url=api_processes[1].base_url, flush_interval=0.2)
    event = {"category": "mutation", "actor": {"id": "u", "type": "user"}, "tenant_id": "acme"}
    stream.log(action="doc.created", **event)
    stream.log(action="doc.shared", metadata={"blob": "x" * 20_000}, **event)  # over the server's 16 KiB
    stream.log(action="doc.deleted", **event)
    assert await asyncio.to_thread(stream.flush, 30)
    assert stream.dropped == 1
    assert (await asyncio.to_thread(stream.info))["event_count"] == 2
    stream.close(timeout=0)


async def test_the_docs_example_runs_as_written(api_processes):
    block = re.search(r"```python\n(.*?)```", (ROOT / "docs" / "sdk.md").read_text(), re.DOTALL).group(1)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", block, env={**os.environ, "HEADWATER_URL": api_processes[1].base_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    first, last = stdout.decode().splitlines()
    assert "'status': 'not_created'" in first
    token, count = last.split()
    assert uuid.UUID(token).version == 4 and count == "1"
