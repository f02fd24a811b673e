"""The README's tour runs exactly as written, against a real API process (HW points the
tour at it; DATABASE_URL points the `headwater` command at the test database)."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def tour_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    tour = readme.split("## A five-minute tour", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", tour, re.DOTALL)


async def test_the_readme_tour_runs_as_written(settings, api_processes):
    blocks = tour_blocks()
    assert len(blocks) == 2
    env = {**os.environ, "HW": api_processes[0].base_url, "DATABASE_URL": settings.database_url or ""}
    script = "set -eu\n" + "\n".join(f"{block}\necho" for block in blocks)
    # Run without blocking the event loop: the test session's worker (which runs the claim) shares it.
    process = await asyncio.create_subprocess_exec("bash", "-c", script, cwd=ROOT, env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    out = stdout.decode()
    assert process.returncode == 0, out + stderr.decode()
    assert '"success":true' in out and '"properties":{"plan":"pro"}' in out, out
    assert '"redacted_count":2' in out and '"event_count":1' in out, out
    assert '"invitee":"[REDACTED:email]"' in out and '"email":"[REDACTED:email]"' in out, out
    assert '"error"' not in out, out
