"""Workspaces (sign-up through the operator token) and their master keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from quart import Blueprint, Response
from quart_schema import document_querystring, document_response, security_scheme

from models.timestamps import iso
from models.workspaces import (
    MasterKey,
    MasterKeyRepository,
    Workspace,
    WorkspaceRepository,
)
from web.auth import master_key_for_workspace, parse_uuid, require_admin_token
from web.errors import APIError
from web.jsonio import PageQuery, json_body, parse_created_page, reject_nulls
from web.responses import json_response
from web.services import services

blueprint = Blueprint("workspaces", __name__, url_prefix="/api/v1/workspaces")

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class CreateWorkspace(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name


class CreateMasterKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name = "default"


class WorkspaceOut(BaseModel):
    id: uuid.UUID
    name: str
    retention_days: int | None
    created_at: datetime


class UpdateWorkspace(BaseModel):
    """Any subset of the fields; those left out keep their value."""
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    # Events older than this many days are deleted hourly (sealed ones; the audit log keeps
    # their hashes). null: keep every event for ever.
    retention_days: Annotated[int, Field(ge=1, le=36_500)] | None = None


class MasterKeyOut(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class IssuedMasterKeyOut(MasterKeyOut):
    key: str


class SignUpOut(BaseModel):
    workspace: WorkspaceOut
    master_key: str
    request_id: str


class MasterKeyList(BaseModel):
    data: list[MasterKeyOut]
    next_cursor: str | None
    request_id: str


def workspace_json(workspace: Workspace) -> dict:
    return {"id": str(workspace.id), "name": workspace.name, "retention_days": workspace.retention_days,
            "created_at": iso(workspace.created_at)}


def master_key_json(key: MasterKey) -> dict:
    return {
        "id": str(key.id), "name": key.name, "prefix": key.prefix, "created_at": iso(key.created_at),
        "last_used_at": iso(key.last_used_at), "revoked_at": iso(key.revoked_at),
    }


@blueprint.post("")
@json_body(CreateWorkspace)
@document_response(SignUpOut, 201)
@security_scheme([{"operatorToken": []}])
async def create_workspace(body: CreateWorkspace) -> Response:
    """Sign up: create a workspace and its first master key (operator token required)."""
    require_admin_token()
    async with services().transaction() as session:
        workspace = await WorkspaceRepository(session).create(body.name)
        issued = await MasterKeyRepository(session).issue(workspace.id, "default")
    return json_response({"workspace": workspace_json(workspace), "master_key": issued.secret}, 201)


@blueprint.get("/<workspace_id>")
@master_key_for_workspace
@document_response(WorkspaceOut)
async def get_workspace(workspace_id: uuid.UUID) -> Response:
    async with services().transaction() as session:
        workspace = await WorkspaceRepository(session).get(workspace_id)
    if workspace is None:
        raise APIError(404, "workspace_not_found", "No such workspace.")
    return json_response(workspace_json(workspace))


@blueprint.put("/<workspace_id>")
@master_key_for_workspace
@json_body(UpdateWorkspace)
@document_response(WorkspaceOut)
async def update_workspace(workspace_id: uuid.UUID, body: UpdateWorkspace) -> Response:
    """Rename the workspace or set its `retention_days` (null: keep events for ever)."""
    changes = body.model_dump(exclude_unset=True)
    reject_nulls(changes, ("name",))
    async with services().transaction() as session:
        workspace = await WorkspaceRepository(session).get(workspace_id)
        if workspace is None:
            raise APIError(404, "workspace_not_found", "No such workspace.")
        for name, value in changes.items():
            setattr(workspace, name, value)
    return json_response(workspace_json(workspace))


@blueprint.get("/<workspace_id>/master-keys")
@master_key_for_workspace
@document_querystring(PageQuery)
@document_response(MasterKeyList)
async def list_master_keys(workspace_id: uuid.UUID) -> Response:
    """The workspace's keys, revoked ones included, oldest first, keyset-paginated; never a secret."""
    query, after = parse_created_page()
    async with services().transaction() as session:
        keys, next_cursor = await MasterKeyRepository(session).page(workspace_id, query.limit, after)
    return json_response({"data": [master_key_json(k) for k in keys], "next_cursor": next_cursor})


@blueprint.post("/<workspace_id>/master-keys")
@master_key_for_workspace
@json_body(CreateMasterKey)
@document_response(IssuedMasterKeyOut, 201)
async def create_master_key(workspace_id: uuid.UUID, body: CreateMasterKey) -> Response:
    """A new key; its secret is in `key`, shown this once."""
    async with services().transaction() as session:
        issued = await MasterKeyRepository(session).issue(workspace_id, body.name)
    return json_response({**master_key_json(issued.key), "key": issued.secret}, 201)


@blueprint.delete("/<workspace_id>/master-keys/<key_id>")
@master_key_for_workspace
@document_response(MasterKeyOut)
async def revoke_master_key(workspace_id: uuid.UUID, key_id: str) -> Response:
    """Revoke a key. The last live key cannot be revoked (the workspace would be locked out)."""
    not_found = APIError(404, "master_key_not_found", "No such master key.")
    key_uuid = parse_uuid(key_id, not_found)
    async with services().transaction() as session:
        keys = MasterKeyRepository(session)
        live = [k for k in await keys.list(workspace_id) if k.revoked_at is None]
        if len(live) == 1 and live[0].id == key_uuid:
            raise APIError(409, "last_master_key", "This is the workspace's last live key; create another first.")
        key = await keys.revoke(workspace_id, key_uuid)
    if key is None:
        raise not_found
    return json_response(master_key_json(key))
