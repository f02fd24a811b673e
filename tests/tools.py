"""The tools some tests need beyond Python: Node (the JavaScript SDK) and Chromium (the browser
tests). Outside CI a missing tool skips those tests with a message saying how to install it;
in CI (`.ci/run` sets CI=1) it fails them, so a green CI run always ran them."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SDK_JS = ROOT / "sdk" / "js"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def missing(what: str, how: str) -> None:
    message = f"{what} not found; {how}"
    if in_ci():
        pytest.fail(f"{message} (CI runs every test: a missing tool fails the run)", pytrace=False)
    pytest.skip(message)


@functools.cache
def node() -> str | None:
    return shutil.which("node")


def require_node() -> str:
    found = node()
    if found is None or shutil.which("npm") is None:
        missing("Node.js 18+ and npm", "install them (Debian: apt-get install -y nodejs npm) to run the JavaScript SDK tests")
    return found or ""


BROWSER_PAGES = ROOT / "tests" / "browser_pages"


@functools.cache
def _npm_ci(directory: Path) -> Path:
    """`npm ci` from the lock file, again only when the lock file changed."""
    stamp = directory / "node_modules" / ".headwater-lock"
    lock = (directory / "package-lock.json").read_bytes()
    if not stamp.exists() or stamp.read_bytes() != lock:
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=directory, check=True)
        stamp.write_bytes(lock)
    return directory / "node_modules"


def npm_packages(directory: Path) -> Path:
    require_node()
    return _npm_ci(directory)


@functools.cache
def _built_sdk() -> Path:
    _npm_ci(SDK_JS)
    subprocess.run(["npm", "run", "--silent", "build"], cwd=SDK_JS, check=True)
    return SDK_JS / "dist"


def built_sdk() -> Path:
    """sdk/js/dist, built with tsc as npm would publish it."""
    require_node()
    return _built_sdk()


def chromium() -> str:
    """Debian's Chromium (or HEADWATER_CHROMIUM), which Playwright drives by executable_path."""
    configured = os.environ.get("HEADWATER_CHROMIUM")
    found = configured or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        missing("Chromium", "install Debian's package (apt-get install -y chromium) or set HEADWATER_CHROMIUM "
                            "to run the browser tests (Playwright's own browser download needs a network)")
    return found or ""
