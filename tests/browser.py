"""A real Chromium for the browser tests: Debian's `chromium`, driven by Playwright through
`executable_path` (Playwright's own browser download needs a network this machine lacks).

Every page a test opens is watched: a JavaScript error, a console error, a request that fails,
an HTTP error the test did not say it expects, or a request to any host but the ones the test
names fails the test when it ends.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import pytest

from tests.tools import chromium

# Without the background-networking flags Chromium keeps trying Google's hosts on this closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
_NETWORK_ERROR_ECHO = "Failed to load resource: the server responded with a status of"


@dataclass
class PageGuard:
    origins: set[str]
    problems: list[str] = field(default_factory=list)
    expected: set[int] = field(default_factory=set)
    left: bool = False

    def origin_allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about"):
            return True
        return f"{parts.scheme}://{parts.netloc}" in self.origins

    @contextlib.contextmanager
    def expecting(self, *statuses: int) -> Iterator[None]:
        """HTTP answers with these statuses are what the test is about, not failures."""
        before = set(self.expected)
        self.expected.update(statuses)
        try:
            yield
        finally:
            self.expected = before

    def leave(self) -> None:
        """The test makes the page go away now: a request it started on `pagehide` is cut off from
        the page (net::ERR_ABORTED) while the browser still delivers it (keepalive, sendBeacon);
        whether it arrived is for the test to check at the server."""
        self.left = True

    def watch(self, page) -> None:
        page.on("pageerror", lambda error: self.problems.append(f"JavaScript error: {error}"))
        page.on("console", self._console)
        page.on("request", self._request)
        page.on("requestfailed", self._request_failed)
        page.on("response", self._response)

    def _console(self, message) -> None:
        if message.type == "error" and not message.text.startswith(_NETWORK_ERROR_ECHO):  # judged by _response
            self.problems.append(f"console error: {message.text}")

    def _request(self, request) -> None:
        if not self.origin_allowed(request.url):
            self.problems.append(f"request to another host: {request.url}")

    def _request_failed(self, request) -> None:
        if request.failure == "net::ERR_ABORTED" and (self.left or request.resource_type == "eventsource"):
            return  # cut off by leaving the page (an endless live stream ends that way)
        self.problems.append(f"request failed: {request.method} {request.url} ({request.failure})")

    def _response(self, response) -> None:
        if response.status >= 400 and response.status not in self.expected:
            self.problems.append(f"HTTP {response.status}: {response.request.method} {response.url}")

    def check(self) -> None:
        assert not self.problems, "the page misbehaved:\n" + "\n".join(self.problems)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator:
    executable = chromium()
    from playwright.async_api import async_playwright

    playwright = await async_playwright().start()
    launched = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    yield launched
    await launched.close()
    await playwright.stop()


@pytest.fixture
async def open_page(browser):
    """`page, guard = await open_page(origin, ...)`: a fresh browser context per page, watched by
    a PageGuard that lets it talk to the given origins only."""
    opened: list[tuple] = []

    async def open_(*origins: str, viewport: dict | None = None, color_scheme: str = "light"):
        context = await browser.new_context(viewport=viewport or DESKTOP, color_scheme=color_scheme)
        page = await context.new_page()
        guard = PageGuard({origin.rstrip("/") for origin in origins})
        guard.watch(page)
        opened.append((context, guard))
        return page, guard

    yield open_
    try:  # judged before closing: a request cut off by the close is not the page's failure
        for _, guard in opened:
            guard.check()
    finally:
        for context, _ in opened:
            await context.close()


def screenshot_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return root


class Site:
    """Another origin: a static HTTP server on 127.0.0.1 for the test pages."""

    def __init__(self, root: Path) -> None:
        self.root = root
        handler = partial(_QuietHandler, directory=str(root))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def page(self, name: str, body: str) -> str:
        (self.root / name).write_text(f"<!doctype html><meta charset=utf-8><title>{name}</title>{body}")
        return f"{self.origin}/{name}"

    def close(self) -> None:
        self.server.shutdown()


class _QuietHandler(SimpleHTTPRequestHandler):
    extensions_map: ClassVar = {**SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript", ".mjs": "text/javascript"}

    def log_message(self, *args) -> None:
        pass
