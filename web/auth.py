"""Who is calling: master keys for workspace routes, the operator token for sign-up."""

from __future__ import annotations

import functools
import hmac
import uuid
from collections.abc import Callable
from typing import Any

from quart import g, request

from models.workspaces import MasterKey, MasterKeyRepository
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


async def authenticate_master_key() -> MasterKey:
    secret = bearer_token()
    if not secret.startswith("mk_") or len(secret) > 200:
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
        return await func(*args, workspace_id=key.workspace_id, **kwargs)

    return wrapper


def require_admin_token() -> None:
    expected = services().settings.admin_token
    if not expected:
        raise APIError(404, "not_found", "No such route.")  # the route is off
    if not hmac.compare_digest(bearer_token().encode(), expected.encode()):
        raise APIError(401, "invalid_admin_token", "The operator token is not valid.",
                       headers={"WWW-Authenticate": "Bearer"})
