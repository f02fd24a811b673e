"""Tokens a master key hands out for a browser to carry: the live debugger's (`lt_`) and the
customer viewer's (`vt_`). `<prefix><payload>.<signature>`: the claims (the workspace, the key,
the expiry, and whatever the token is for) as base64url JSON, signed with HMAC-SHA256 keyed by
the master key's stored hash — so revoking the key voids every token it made, at once, on
every API process (the check reads the key's row)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from typing import Any

import orjson

from models.workspaces import MasterKey
from web.errors import APIError
from web.services import services


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: MasterKey, payload: str) -> bytes:
    return hmac.new(key.key_hash.encode(), payload.encode(), hashlib.sha256).digest()


def sign(prefix: str, key: MasterKey, expires: int, **claims: Any) -> str:
    payload = _b64(orjson.dumps({"w": str(key.workspace_id), "k": str(key.id), "e": expires, **claims}))
    return f"{prefix}{payload}.{_b64(_signature(key, payload))}"


async def verify(prefix: str, token: str, invalid: APIError) -> dict[str, Any]:
    """The token's claims (`w`: the workspace id, as a UUID) if it is ours, unexpired, and its
    key still live; else raises `invalid`."""
    if not token.startswith(prefix):
        raise invalid
    try:
        payload, signature = token.removeprefix(prefix).split(".")
        claims = orjson.loads(_unb64(payload))
        key_id, expires, workspace_id = uuid.UUID(claims["k"]), int(claims["e"]), uuid.UUID(claims["w"])
        given = _unb64(signature)
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise invalid from None
    if expires < time.time():
        raise invalid
    async with services().transaction() as session:
        key = await session.get(MasterKey, key_id)
    if key is None or key.revoked_at is not None or key.workspace_id != workspace_id:
        raise invalid
    if not hmac.compare_digest(_signature(key, payload), given):
        raise invalid
    return {**claims, "w": workspace_id}
