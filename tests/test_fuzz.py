"""schemathesis against a running API process, from its own /openapi.json: bounded examples,
no server error allowed. Every operation but the endless live stream, the export, and
destinations and forwarding rules: generated destinations could point at real hosts, and this
machine sends nothing off itself."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.conftest import make_workspace

ROOT = Path(__file__).resolve().parent.parent


async def test_no_operation_answers_a_server_error(api_processes, sessions):
    workspace = await make_workspace(sessions, "fuzz")
    api = api_processes[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "schemathesis.cli", "run", f"{api.base_url}/openapi.json",
        "--checks", "not_a_server_error", "--header", f"Authorization: Bearer {workspace.key}",
        "--max-examples", "5", "--max-time", "60", "--seed", "1", "--phases", "coverage,fuzzing",
        "--exclude-path-regex", "events/live$|/export$|/destinations|/event-forwarding-rules", "--request-timeout", "10", "--workers", "2",
        "--no-color", cwd=ROOT, env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), 180)
    text = output.decode()
    assert process.returncode == 0, text[-5000:]
    assert "Server error" not in text
