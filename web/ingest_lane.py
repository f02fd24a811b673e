"""The ingest lane: an ASGI middleware that serves `POST /v1/*` before Quart sees it.

Why: ingestion is the one path where per-request overhead is the product's throughput.
Measured on the 2-core machine of docs/benchmarks.md, hypercorn answers a JSON POST about 1,800
times a second with a bare ASGI app and about 1,000 with a minimal Quart app: Quart's
request context, routing, hooks, response object and the two tasks it spawns per request cost
more CPU than everything ingestion itself does, group commit included. The lane runs the very
same endpoint code (`web.ingest`: `WireRequest` in, JSON out, `APIError` for failures), with
the same request ids, `X-Request-Id` header, access log line and error shape, and leaves every
other request — other methods and paths included — to Quart. `HEADWATER_INGEST_LANE=false`
turns it off and the blueprint serves the same endpoints; the tests run against both.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import parse_qsl

import orjson
from quart import Quart

from telemetry import logs
from web.clientip import resolve_client_ip
from web.errors import APIError, error_payload, failure
from web.ingest import PATHS, WireRequest, dispatch
from web.responses import new_request_id
from web.services import Services

access_log = logging.getLogger("headwater.access")

BODY_TIMEOUT_SECONDS = 60.0


class ClientGone(Exception):
    pass


class IngestLane:
    def __init__(self, app: Quart, downstream: Any) -> None:
        self.app = app
        self.downstream = downstream

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in PATHS:
            await self.downstream(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = new_request_id()
        logs.request_id.set(request_id)
        status, payload, extra_headers = await self._handle(scope, receive, PATHS[scope["path"]])
        if status is None:  # the client went away before sending its body
            return
        payload["request_id"] = request_id
        body = orjson.dumps(payload)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"x-request-id", request_id.encode())]
        headers += [(name.lower().encode(), value.encode()) for name, value in extra_headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
        elapsed_ms = (time.perf_counter() - started) * 1000
        access_log.info("%s %s %s %.1fms %s", "POST", scope["path"], status, elapsed_ms, request_id,
                        extra={"method": "POST", "path": scope["path"], "status": status,
                               "duration_ms": round(elapsed_ms, 1)})

    async def _handle(self, scope: dict, receive: Any, kind: str | None) -> tuple[Any, dict, dict[str, str]]:
        try:
            svc: Services | None = self.app.extensions.get("headwater")
            if svc is None:
                raise APIError(503, "starting", "The API is starting; retry shortly.", headers={"Retry-After": "1"})
            wire = await self._wire(scope, receive, svc)
            return 200, await dispatch(svc, wire, kind), {}
        except ClientGone:
            return None, {}, {}
        except APIError as error:
            return error.status, error_payload(error), error.headers
        except Exception as error:  # noqa: BLE001 — never a traceback to the client
            error = failure(error)
            return error.status, error_payload(error), error.headers

    async def _wire(self, scope: dict, receive: Any, svc: Services) -> WireRequest:
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        peer = (scope.get("client") or ("unknown", 0))[0]
        ip = resolve_client_ip(peer, headers.get("x-forwarded-for", ""), svc.settings.trusted_proxies)
        body = await self._body(receive, headers, svc.settings.max_body_bytes)
        return WireRequest(headers=headers, query=query, body=body, client_ip=None if ip == "unknown" else ip)

    async def _body(self, receive: Any, headers: dict[str, str], limit: int) -> bytes:
        too_large = APIError(413, "payload_too_large", "The request body is too large.")
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(BODY_TIMEOUT_SECONDS):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise ClientGone
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise too_large
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise APIError(408, "request_timeout", "The request body took too long to arrive.") from None
