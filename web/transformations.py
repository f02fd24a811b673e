"""Event transformations (`/api/v1/workspaces/{id}/event-transformations`, master key):
CRUD, versions, the activation check and the `test` endpoint.

JavaScript runs in the process's sandbox process (`activities.sandbox_process`), never in the
API itself.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints
from quart import Blueprint, Response
from quart_schema import document_querystring, document_response

from activities.sandbox import TransformOutcome, TransformSourceError
from models.forwarding import ForwardingRepository
from models.timestamps import iso
from models.transformations import ACTIVE, DRAFT, ERROR, EventTransformation, TransformationRepository
from web.auth import master_key_for_workspace, parse_uuid
from web.errors import APIError
from web.jsonio import PageQuery, json_body, parse_created_page, reject_nulls
from web.responses import json_response
from web.services import services

blueprint = Blueprint("transformations", __name__,
                      url_prefix="/api/v1/workspaces/<workspace_id>/event-transformations")

MAX_SOURCE_CHARS = 100_000
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=2000)]
SourceCode = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SOURCE_CHARS)]


class CreateTransformation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    description: Description | None = None
    source_code: SourceCode
    test_input: dict[str, Any] | None = None
    test_output: dict[str, Any] | list[dict[str, Any]] | None = None
    status: Literal["draft", "active"] = "draft"


class UpdateTransformation(BaseModel):
    """Any subset of the fields; those left out keep their value. Every update is a new version."""
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    description: Description | None = None
    source_code: SourceCode | None = None
    test_input: dict[str, Any] | None = None
    test_output: dict[str, Any] | list[dict[str, Any]] | None = None
    status: Literal["draft", "active"] | None = None


class TestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: dict[str, Any] | None = None


class TransformationOut(BaseModel):
    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    description: str | None
    source_code: str
    test_input: dict[str, Any] | None
    test_output: dict[str, Any] | list[dict[str, Any]] | None
    status: Literal["draft", "active", "error"]
    version: int
    last_error: str | None
    error_count: int
    created_at: str
    updated_at: str


class TransformationList(BaseModel):
    data: list[TransformationOut]
    next_cursor: str | None
    request_id: str


class TestResult(BaseModel):
    output: dict[str, Any] | list[dict[str, Any]] | None
    dropped: bool
    logs: list[str]
    error: str | None
    duration_ms: float
    matches_expected: bool | None
    version: int
    request_id: str


def transformation_json(t: EventTransformation) -> dict[str, Any]:
    return {
        "id": str(t.id), "workspace_id": str(t.workspace_id), "name": t.name, "description": t.description,
        "source_code": t.source_code, "test_input": t.test_input, "test_output": t.test_output, "status": t.status,
        "version": t.version, "last_error": t.last_error, "error_count": t.error_count,
        "created_at": iso(t.created_at), "updated_at": iso(t.updated_at),
    }


def transformation_not_found() -> APIError:
    return APIError(404, "transformation_not_found", "No such event transformation.")


async def check_code(source_code: str) -> None:
    """422 `invalid_source_code` with line and column when the code cannot run."""
    try:
        await services().sandbox.check(source_code)
    except TransformSourceError as exc:
        details: dict[str, Any] = {"field": "source_code", "message": exc.message}
        if exc.line is not None:
            details |= {"line": exc.line, "column": exc.column}
        raise APIError(422, "invalid_source_code", exc.message, [details]) from None


def output_of(outcome: TransformOutcome) -> dict[str, Any] | list[dict[str, Any]] | None:
    if outcome.error is not None or outcome.dropped:
        return None
    return outcome.events if outcome.fanned_out else outcome.events[0]


async def run_test(t: EventTransformation, event: dict[str, Any]) -> dict[str, Any]:
    """`event` through version `t.version` of `t`, as the `test` endpoint reports it."""
    meta = {"source_id": None, "workspace_id": str(t.workspace_id), "rule_id": None}
    [outcome], duration_ms = await services().sandbox.transform(
        (str(t.id), t.version), t.source_code, [event], meta, with_logs=True)
    output = output_of(outcome)
    matches = None
    if t.test_output is not None:
        matches = outcome.error is None and output == t.test_output
    return {"output": output, "dropped": outcome.dropped, "logs": outcome.logs, "error": outcome.error,
            "duration_ms": round(duration_ms, 3), "matches_expected": matches, "version": t.version}


async def check_activation(t: EventTransformation) -> None:
    """An active transformation must turn its test_input into its test_output (when both are given)."""
    if t.status != ACTIVE or t.test_input is None or t.test_output is None:
        return
    result = await run_test(t, t.test_input)
    if not result["matches_expected"]:
        raise APIError(422, "test_failed", "test_input does not transform into test_output, so the transformation "
                       "cannot be active.", {"expected": t.test_output, "output": result["output"],
                                             "error": result["error"], "logs": result["logs"]})


async def _get(repository: TransformationRepository, workspace_id: uuid.UUID, transform_id: str, *,
               for_update: bool = False) -> EventTransformation:
    t = await repository.get(workspace_id, parse_uuid(transform_id, transformation_not_found()), for_update=for_update)
    if t is None:
        raise transformation_not_found()
    return t


async def _load(workspace_id: uuid.UUID, transform_id: str) -> EventTransformation:
    async with services().transaction() as session:
        return await _get(TransformationRepository(session), workspace_id, transform_id)


@blueprint.get("")
@master_key_for_workspace
@document_querystring(PageQuery)
@document_response(TransformationList)
async def list_transformations(workspace_id: uuid.UUID) -> Response:
    """The workspace's transformations, oldest first, keyset-paginated."""
    query, after = parse_created_page()
    async with services().transaction() as session:
        rows, next_cursor = await TransformationRepository(session).page(workspace_id, query.limit, after)
    return json_response({"data": [transformation_json(t) for t in rows], "next_cursor": next_cursor})


@blueprint.post("")
@master_key_for_workspace
@json_body(CreateTransformation)
@document_response(TransformationOut, 201)
async def create_transformation(workspace_id: uuid.UUID, body: CreateTransformation) -> Response:
    """Create a transformation (status `draft` unless `active` is asked for and its test passes).
    Code that does not compile, or defines no `transform`, is refused with line and column."""
    await check_code(body.source_code)
    draft = EventTransformation(workspace_id=workspace_id, id=uuid.uuid4(), version=1, **body.model_dump())
    await check_activation(draft)
    async with services().transaction() as session:
        t = await TransformationRepository(session).create(workspace_id, **body.model_dump())
    return json_response(transformation_json(t), 201)


@blueprint.get("/<transform_id>")
@master_key_for_workspace
@document_response(TransformationOut)
async def get_transformation(workspace_id: uuid.UUID, transform_id: str) -> Response:
    return json_response(transformation_json(await _load(workspace_id, transform_id)))


@blueprint.put("/<transform_id>")
@master_key_for_workspace
@json_body(UpdateTransformation)
@document_response(TransformationOut)
async def update_transformation(workspace_id: uuid.UUID, transform_id: str, body: UpdateTransformation) -> Response:
    """Change any fields; every update is a new `version` (batches in flight finish with the
    version they started with). New code on an `error` transformation makes it `draft` again;
    `status: active` needs test_input to transform into test_output when both are given."""
    changes = body.model_dump(exclude_unset=True)
    reject_nulls(changes, ("name", "source_code", "status"))
    if "source_code" in changes:
        await check_code(changes["source_code"])
    async with services().transaction() as session:
        repository = TransformationRepository(session)
        t = await _get(repository, workspace_id, transform_id, for_update=True)
        code_changed = "source_code" in changes and changes["source_code"] != t.source_code
        for name, value in changes.items():
            setattr(t, name, value)
        if t.status == ERROR and code_changed and "status" not in changes:
            t.status = DRAFT
        # The activation check runs the next version's code under its own key, so the
        # version is taken first (the row is locked, so nobody else takes it).
        await repository.new_version(t)
        await check_activation(t)
    return json_response(transformation_json(t))


@blueprint.delete("/<transform_id>")
@master_key_for_workspace
async def delete_transformation(workspace_id: uuid.UUID, transform_id: str) -> Response:
    async with services().transaction() as session:
        repository = TransformationRepository(session)
        t = await _get(repository, workspace_id, transform_id, for_update=True)
        if await ForwardingRepository(session).rules_using(transformation_id=t.id):
            raise APIError(409, "transformation_in_use", "Forwarding rules use this transformation; remove it from "
                           "them first.")
        await repository.delete(t)
    return Response(status=204)


class VersionOut(BaseModel):
    version: int
    source_code: str
    created_at: str


class VersionList(BaseModel):
    data: list[VersionOut]
    request_id: str


@blueprint.get("/<transform_id>/versions")
@master_key_for_workspace
@document_response(VersionList)
async def versions(workspace_id: uuid.UUID, transform_id: str) -> Response:
    """Every version of the code, newest first (at most one per update, so a short list)."""
    async with services().transaction() as session:
        repository = TransformationRepository(session)
        t = await _get(repository, workspace_id, transform_id)
        rows = await repository.versions(t.id)
    return json_response({"data": [{"version": v.version, "source_code": v.source_code,
                                    "created_at": iso(v.created_at)} for v in rows]})


@blueprint.post("/<transform_id>/test")
@master_key_for_workspace
@json_body(TestRequest, optional=True)
@document_response(TestResult)
async def test_transformation(workspace_id: uuid.UUID, transform_id: str, body: TestRequest) -> Response:
    """Run the current version on `{"input": {...}}`, or on the stored `test_input` when no
    body (or no `input`) is sent. `matches_expected` compares with the stored `test_output`."""
    t = await _load(workspace_id, transform_id)
    event = body.input if body.input is not None else t.test_input
    if event is None:
        raise APIError(422, "no_test_input", "Send {\"input\": {...}} or store a test_input on the transformation.")
    return json_response(await run_test(t, event))
