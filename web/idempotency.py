"""`Idempotency-Key` on management POSTs, as Stripe's API takes it: a repeat within 24 h with
the same key and the same request gets the first answer again (`Idempotent-Replayed: true`)
and changes nothing; the same key with another request is 422; while the first request runs,
a repeat is 409. Answers of 5xx and 429 are not kept, so a retry runs again."""

from __future__ import annotations

import hashlib
import logging
import re

from quart import Quart, Response, g, request

from models.idempotency import IdempotencyRepository
from web.auth import SESSION_COOKIE
from web.errors import APIError
from web.jsonio import body_bytes
from web.services import services

log = logging.getLogger("headwater.web")

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
# Anonymous stream events carry their own per-event `idempotency_key`; /v1/* dedups on messageId.
_NOT_MANAGEMENT = re.compile(r"^/api/v1/streams/[^/]+/events$")


def _applies() -> bool:
    return (request.method == "POST" and request.path.startswith("/api/v1/")
            and _NOT_MANAGEMENT.match(request.path) is None)


def _digest(*parts: bytes) -> str:
    return hashlib.sha256(b"\n".join(parts)).hexdigest()


def register_idempotency(app: Quart) -> None:
    @app.before_request
    async def replay_or_take_key() -> Response | None:
        key = request.headers.get(HEADER)
        if key is None or not _applies():
            return None
        if not 0 < len(key) <= MAX_KEY_LENGTH:
            raise APIError(400, "invalid_idempotency_key", f"{HEADER} must be 1 to {MAX_KEY_LENGTH} characters.")
        caller = _digest((request.headers.get("Authorization") or request.cookies.get(SESSION_COOKIE, "")).encode())
        fingerprint = _digest(request.method.encode(), request.full_path.encode(),
                              await body_bytes())
        async with services().transaction() as session:
            kept = await IdempotencyRepository(session).begin(caller, key, fingerprint)
        if kept is None:
            g.idempotency = (caller, key)
            return None
        if kept.fingerprint != fingerprint:
            raise APIError(422, "idempotency_key_reused", f"This {HEADER} was used with a different request in "
                           "the last 24 hours; use a new key for a new request.")
        if kept.status is None:
            raise APIError(409, "idempotency_key_in_use", f"A request with this {HEADER} is still running; retry "
                           "shortly to get its answer.", headers={"Retry-After": "1"})
        response = Response(kept.body or b"", status=kept.status, content_type=kept.content_type)
        response.headers["Idempotent-Replayed"] = "true"
        return response

    @app.after_request
    async def keep_answer(response: Response) -> Response:
        taken = g.pop("idempotency", None)
        if taken is None:
            return response
        caller, key = taken
        try:
            async with services().transaction() as session:
                repository = IdempotencyRepository(session)
                if response.status_code >= 500 or response.status_code == 429:
                    await repository.release(caller, key)
                else:
                    await repository.keep(caller, key, response.status_code, response.content_type,
                                          await response.get_data(as_text=False))
        except Exception as exc:  # noqa: BLE001 — the answer stands; the key frees itself (ABANDONED_AFTER)
            log.warning("could not keep the answer for an idempotency key: %s", exc)
        return response
