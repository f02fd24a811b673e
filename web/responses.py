"""JSON responses (orjson) that carry the request id."""

from __future__ import annotations

import secrets
from typing import Any

import orjson
from quart import Response, g


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    if isinstance(body, dict) and "request_id" in g:
        body.setdefault("request_id", g.request_id)
    response = Response(orjson.dumps(body), status=status, content_type="application/json")
    if headers:
        response.headers.update(headers)
    return response
