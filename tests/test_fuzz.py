"""schemathesis against a running API process, from its own /openapi.json: bounded examples
through the coverage and fuzzing phases, and no answer may be a server error, break its
declared response schema or its declared content type.

Every operation is run but three kinds: the endless live stream and the streamed export (a
generated request may wait for ever), and destinations and forwarding rules (a generated
destination could point at a real host, and a test sends nothing off this machine). Requests
carry a real workspace's id, master key and write key (tests/schemathesis.toml), so they reach the
handlers instead of stopping at a 404; revoking a master key is left out, because schemathesis
learns ids from earlier answers, revoked the run's own key, and everything after it was a 401.

One worker: with two, hypothesis's source inspection in threads trips CPython 3.11's
"AST constructor recursion depth mismatch" (gh-106905) now and then."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

from tests.conftest import make_workspace

ROOT = Path(__file__).resolve().parent.parent


async def test_no_operation_answers_a_server_error_or_breaks_its_schema(api_processes, sessions):
    workspace = await make_workspace(sessions, "fuzz")
    api = api_processes[1]
    async with api.client() as http:
        source = (await http.post(workspace.url("/event-keys"), json={"name": "fuzz"}, headers=workspace.headers)).json()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(ROOT / "tests" / "schemathesis.toml"),
        "run", f"{api.base_url}/openapi.json",
        "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
        "--max-examples", "5", "--max-time", "90", "--seed", "1", "--phases", "coverage,fuzzing",
        "--exclude-path-regex", "events/live$|/export$|/destinations|/event-forwarding-rules",
        "--request-timeout", "10", "--workers", "1", "--no-color", cwd=ROOT,
        env={**os.environ, "HW_FUZZ_KEY": workspace.key, "HW_FUZZ_WORKSPACE": workspace.id,
             "HW_FUZZ_WRITE_KEY": source["key"]},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), 240)
    text = output.decode()
    assert process.returncode == 0, text[-6000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", text)
    assert generated and generated.group(1) == generated.group(2) and int(generated.group(1)) > 1000, text[-3000:]
    print(text[text.find("WARNINGS"):])  # the figures docs/api.md quotes
