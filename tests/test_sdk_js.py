"""The JavaScript SDK (sdk/js): its own tests, run by Node's test runner against a real API
process, after building it with tsc the way it is published."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess

import pytest

from tests.conftest import ApiProcess
from tests.tools import SDK_JS, built_sdk


@pytest.fixture(scope="module")
def roomy_api(settings, worker, tmp_path_factory):
    """An API process whose per-IP stream limits do not get in the SDK tests' way."""
    process = ApiProcess(settings, tmp_path_factory.mktemp("sdk-js"), HEADWATER_STREAM_REQUESTS_PER_MINUTE="100000",
                         HEADWATER_STREAM_EVENTS_PER_DAY="100000", HEADWATER_STREAM_LIFETIME_EVENTS="100000",
                         HEADWATER_STREAM_CREATIONS_PER_DAY="100000", HEADWATER_TRUSTED_PROXIES="")
    yield process
    process.stop()


async def test_the_javascript_sdk_passes_its_own_tests(roomy_api):
    built_sdk()
    result = await asyncio.to_thread(
        subprocess.run, ["node", "--test", "--test-reporter=spec", "test/"], cwd=SDK_JS,
        env={"PATH": os.environ["PATH"], "HEADWATER_URL": roomy_api.base_url},
        capture_output=True, text=True, timeout=300,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    # Every test ran: none skipped for want of HEADWATER_URL.
    assert re.search(r"\bfail 0\b", report) and re.search(r"\bskipped 0\b", report), report
    assert re.search(r"\bpass [1-9]", report), report
