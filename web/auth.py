"""Who is calling: master keys for workspace routes, the operator token for sign-up.

A workspace route takes the master key as `Authorization: Bearer mk_…`, or, from the console,
the session cookie: then a state-changing request must also carry the session's CSRF token in
`X-CSRF-Token` (the console's scripts send it), so another site cannot act through the cookie.
"""

from __future__ import annotations

import functools
import hmac
import uuid
from collections.abc import Callable
from typing import Any

from quart import g, request

from models.console_sessions import ConsoleSessionRepository, SignedIn
from models.workspaces import MasterKey, MasterKeyRepository
from telemetry import logs
from web.errors import APIError
from web.services import services


def bearer_token() -> str:
    header = request.headers.get("Authorization")
    if not header:
        raise APIError(401, "missing_credentials", "Send Authorization: Bearer <key>.",
                       headers={"WWW-Authenticate": "Bearer"})
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or any(c.isspace() for c in token):
        raise APIError(401, "invalid_authorization", "The Authorization header must be 'Bearer <key>'.",
                       headers={"WWW-Authenticate": "Bearer"})
    return token


SESSION_COOKIE = "hw_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def console_session() -> SignedIn | None:
    """The console session behind the request's cookie, if it is live."""
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret or len(secret) > 100:
        return None
    async with services().transaction() as session:
        return await ConsoleSessionRepository(session).find(secret)


def plausible_master_key(secret: str) -> bool:
    """Worth a lookup: master keys are `mk_` and url-safe base64 (models.workspaces)."""
    return secret.startswith("mk_") and len(secret) <= 200


async def authenticate_master_key() -> MasterKey:
    if "Authorization" not in request.headers and SESSION_COOKIE in request.cookies:
        signed_in = await console_session()
        if signed_in is None:
            raise APIError(401, "session_expired", "The console session has ended; sign in again.")
        if request.method not in SAFE_METHODS and not hmac.compare_digest(
                request.headers.get("X-CSRF-Token", "").encode(), signed_in.csrf_token.encode()):
            raise APIError(403, "csrf_failed", "Missing or wrong X-CSRF-Token for this console session.")
        return signed_in.key
    secret = bearer_token()
    if not plausible_master_key(secret):
        raise APIError(401, "invalid_key", "Unknown or revoked master key.", headers={"WWW-Authenticate": "Bearer"})
    async with services().transaction() as session:
        key = await MasterKeyRepository(session).authenticate(secret)
    if key is None:
        raise APIError(401, "invalid_key", "Unknown or revoked master key.", headers={"WWW-Authenticate": "Bearer"})
    return key


def workspace_not_found() -> APIError:
    return APIError(404, "workspace_not_found", "No such workspace.")


def parse_uuid(value: str, error: APIError) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise error from None


def master_key_for_workspace(func: Callable) -> Callable:
    """For `/api/v1/workspaces/<workspace_id>/...`: the key must belong to that workspace.

    A key of another workspace gets the same 404 as a workspace that does not exist, so a
    caller cannot learn which workspace ids exist.
    """

    @functools.wraps(func)
    async def wrapper(*args: Any, workspace_id: str, **kwargs: Any) -> Any:
        key = await authenticate_master_key()
        if parse_uuid(workspace_id, workspace_not_found()) != key.workspace_id:
            raise workspace_not_found()
        g.master_key = key
        logs.workspace_id.set(str(key.workspace_id))
        return await func(*args, workspace_id=key.workspace_id, **kwargs)

    return wrapper


def require_admin_token() -> None:
    expected = services().settings.admin_token
    if not expected:
        raise APIError(404, "not_found", "No such route.")  # the route is off
    if not hmac.compare_digest(bearer_token().encode(), expected.encode()):
        raise APIError(401, "invalid_admin_token", "The operator token is not valid.",
                       headers={"WWW-Authenticate": "Bearer"})
