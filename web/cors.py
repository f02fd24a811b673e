"""CORS, as an ASGI middleware in front of everything (the ingest lane included).

The public doors — the Segment-compatible `/v1/*` and the anonymous stream endpoints — answer
browsers from any origin, as Segment's and RudderStack's own APIs do: a write key and a claim
token are public by design, and nothing rides on cookies, so `Access-Control-Allow-Origin: *`
without credentials. A preflight there may ask for any further request header and gets it
(RudderStack's SDK sends `AnonymousId` and its `RSA-*` retry headers, for instance): with no
credentials involved, a header cannot carry anything a page could not send in the body. The
management API stays same-origin (the console is served by the API
itself) unless `HEADWATER_CORS_ORIGINS` names origins; those get their own origin back.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

PUBLIC_HEADERS = "Content-Type, Authorization, X-Write-Key, Content-Encoding"
MANAGEMENT_HEADERS = "Content-Type, Authorization, Idempotency-Key"
MANAGEMENT_METHODS = "GET, POST, PUT, DELETE"
EXPOSED = "X-Request-Id, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset"
MAX_AGE = "86400"  # browsers may cache a preflight this long (Chromium caps it at 2 hours)

_STREAM = re.compile(r"^/api/v1/streams/[^/]+/(events|info)$")
_PUBLIC_NAMES = tuple(name.strip() for name in PUBLIC_HEADERS.split(","))
_HEADER_LIST = re.compile(rb"^[A-Za-z0-9!#$%&'*+.^_`|~-]+(\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*$")


def public_headers(requested: bytes | None) -> bytes:
    """The standard headers, plus whatever well-formed header names the preflight asks for."""
    names = list(_PUBLIC_NAMES)
    if requested and len(requested) <= 1024 and _HEADER_LIST.match(requested.strip()):
        known = {name.lower() for name in names}
        for name in requested.decode("latin-1").split(","):
            if name.strip().lower() not in known:
                names.append(name.strip())
                known.add(name.strip().lower())
    return ", ".join(names).encode()


class CORS:
    def __init__(self, app: Any, public_paths: Collection[str], management_origins: Collection[str]) -> None:
        self.app = app
        self.public_paths = frozenset(public_paths)
        self.origins = frozenset(management_origins)

    def _public_methods(self, path: str) -> str | None:
        if path in self.public_paths:
            return "POST"
        match = _STREAM.match(path)
        if match is not None:
            return "POST" if match.group(1) == "events" else "GET"
        return None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = next((value for name, value in scope["headers"] if name == b"origin"), None)
        if origin is None:  # not a cross-origin browser request
            await self.app(scope, receive, send)
            return
        public_methods = self._public_methods(scope["path"])
        if public_methods is not None:
            requested = next((value for name, value in scope["headers"] if name == b"access-control-request-headers"), None)
            allow_origin, methods, headers = b"*", public_methods, public_headers(requested)
        elif origin.decode("latin-1") in self.origins or "*" in self.origins:
            allow_origin, methods, headers = origin, MANAGEMENT_METHODS, MANAGEMENT_HEADERS.encode()
        else:  # the management API, same-origin only: no CORS headers, so the browser refuses
            await self.app(scope, receive, send)
            return
        answer = [(b"access-control-allow-origin", allow_origin)]
        if allow_origin != b"*":
            answer.append((b"vary", b"Origin"))
        preflight = scope["method"] == "OPTIONS" and any(
            name == b"access-control-request-method" for name, _ in scope["headers"])
        if preflight:
            await send({"type": "http.response.start", "status": 204, "headers": [
                *answer, (b"access-control-allow-methods", f"{methods}, OPTIONS".encode()),
                (b"access-control-allow-headers", headers), (b"access-control-max-age", MAX_AGE.encode())]})
            await send({"type": "http.response.body", "body": b""})
            return
        answer.append((b"access-control-expose-headers", EXPOSED.encode()))

        async def send_with_cors(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *answer]}
            await send(message)

        await self.app(scope, receive, send_with_cors)
