"""Event contracts (`/api/v1/workspaces/{id}/event-contracts`, master key); their enforcement
in the ingest path is ingest.contracts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator
from quart import Blueprint, Response
from quart_schema import document_querystring, document_response
from sqlalchemy.exc import IntegrityError

from models.canonical import EventType
from models.contract_checks import (
    CONTRACT_EVENT_TYPES,
    SchemaInvalid,
    compile_schema,
)
from models.contracts import (
    ContractRepository,
    EventContract,
    ViolationFilters,
)
from models.paging import decode_seq_pair_cursor
from models.timestamps import iso
from web.auth import master_key_for_workspace, parse_uuid
from web.errors import APIError
from web.jsonio import IsoDateTime, PageQuery, decoded_cursor, json_body, parse_created_page, parse_query, reject_nulls
from web.responses import json_response
from web.services import services

blueprint = Blueprint("contracts", __name__, url_prefix="/api/v1/workspaces/<workspace_id>/event-contracts")

Mode = Literal["allow", "warn", "block"]
Undeclared = Literal["allow", "warn", "block", "strip"]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
EventName = Annotated[str, StringConstraints(min_length=1, max_length=512)]


def _checkable(value: EventType) -> EventType:
    if value not in CONTRACT_EVENT_TYPES:
        raise ValueError(f"{value} events carry no payload to check; contracts cover "
                         f"{', '.join(CONTRACT_EVENT_TYPES)}")
    return value


ContractEventType = Annotated[EventType, AfterValidator(_checkable)]


class CreateContract(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    event_type: ContractEventType
    event_name: EventName | None = None
    schema_definition: dict[str, Any]
    enforcement_mode: Mode = "warn"
    undeclared_fields: Undeclared = "allow"


class UpdateContract(BaseModel):
    """Any subset of the fields; those left out keep their value."""
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    event_type: ContractEventType | None = None
    event_name: EventName | None = None
    schema_definition: dict[str, Any] | None = None
    enforcement_mode: Mode | None = None
    undeclared_fields: Undeclared | None = None
    status: Literal["active", "archived"] | None = None


class ContractOut(BaseModel):
    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    description: str | None
    event_type: str
    event_name: str | None
    schema_definition: dict[str, Any]
    enforcement_mode: str
    undeclared_fields: str
    status: str
    version: int
    violation_count: int
    created_at: datetime
    updated_at: datetime


class ContractList(BaseModel):
    data: list[ContractOut]
    next_cursor: str | None
    request_id: str


class ContractQuery(PageQuery):
    status: Literal["active", "archived"] | None = None
    event_type: ContractEventType | None = None
    event_name: str | None = None


class ViolationQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = None
    since: IsoDateTime | None = None
    kind: Literal["required_missing", "type_mismatch", "undeclared_field", "format", "enum", "other"] | None = None
    path: str | None = None
    group_by: str | None = None

    @field_validator("group_by")
    @classmethod
    def _group_by(cls, value: str | None) -> str | None:
        if value is not None:
            parts = [p.strip() for p in value.split(",")]
            if not parts or any(p not in ("path", "kind") for p in parts) or len(set(parts)) != len(parts):
                raise ValueError("group_by is path, kind or path,kind")
        return value


class ViolationOut(BaseModel):
    id: str  # vio_<batch>_<n>
    contract_id: uuid.UUID
    event_id: str | None
    event_type: str
    event_name: str | None
    source_id: uuid.UUID | None
    path: str
    kind: str
    message: str
    action: str
    occurred_at: datetime


class ViolationPage(BaseModel):
    data: list[ViolationOut]
    next_cursor: str | None
    request_id: str


def contract_json(contract: EventContract, violation_count: int) -> dict[str, Any]:
    return {
        "id": str(contract.id), "workspace_id": str(contract.workspace_id), "name": contract.name,
        "description": contract.description, "event_type": contract.event_type, "event_name": contract.event_name,
        "schema_definition": contract.schema_definition, "enforcement_mode": contract.enforcement_mode,
        "undeclared_fields": contract.undeclared_fields, "status": contract.status, "version": contract.version,
        "violation_count": violation_count, "created_at": iso(contract.created_at),
        "updated_at": iso(contract.updated_at),
    }


def contract_not_found() -> APIError:
    return APIError(404, "contract_not_found", "No such event contract.")


def compiled_schema(definition: dict[str, Any]) -> dict[str, Any]:
    try:
        return compile_schema(definition)
    except SchemaInvalid as exc:
        raise APIError(422, "invalid_schema", f"schema_definition is not a valid schema: {exc.message}",
                       [{"field": "schema_definition" + exc.path.replace("/", "."), "pointer": exc.path,
                         "message": exc.message}]) from None


def check_name_fits_type(event_type: str, event_name: str | None) -> None:
    if event_type in ("identify", "group") and event_name is not None:
        raise APIError(422, "validation_failed", f"{event_type} events have no name: leave event_name out.",
                       [{"field": "event_name", "message": f"not used for {event_type}"}])


def already_active() -> APIError:
    return APIError(409, "contract_exists", "An active contract already covers this event_type and event_name; "
                    "archive or update it instead.")


@blueprint.get("")
@master_key_for_workspace
@document_querystring(ContractQuery)
@document_response(ContractList)
async def list_contracts(workspace_id: uuid.UUID) -> Response:
    """The workspace's contracts, oldest first, keyset-paginated."""
    query, after = parse_created_page(ContractQuery)
    async with services().transaction() as session:
        repository = ContractRepository(session)
        contracts, next_cursor = await repository.page(workspace_id, query.limit, after,
                                                       **query.model_dump(exclude={"limit", "cursor"}))
        counts = await repository.violation_counts([c.id for c in contracts])
    return json_response({"data": [contract_json(c, counts.get(c.id, 0)) for c in contracts],
                          "next_cursor": next_cursor})


@blueprint.post("")
@master_key_for_workspace
@json_body(CreateContract)
@document_response(ContractOut, 201)
async def create_contract(workspace_id: uuid.UUID, body: CreateContract) -> Response:
    """Create a contract; it is enforced on every API process within 2 s."""
    check_name_fits_type(body.event_type, body.event_name)
    schema = compiled_schema(body.schema_definition)
    try:
        async with services().transaction() as session:
            contract = await ContractRepository(session).create(workspace_id, json_schema=schema, **body.model_dump())
    except IntegrityError:
        raise already_active() from None
    services().contracts.forget(workspace_id)
    return json_response(contract_json(contract, 0), 201)


async def _get(repository: ContractRepository, workspace_id: uuid.UUID, contract_id: str, *,
               for_update: bool = False) -> EventContract:
    contract = await repository.get(workspace_id, parse_uuid(contract_id, contract_not_found()), for_update=for_update)
    if contract is None:
        raise contract_not_found()
    return contract


async def _load(workspace_id: uuid.UUID, contract_id: str) -> tuple[EventContract, int]:
    async with services().transaction() as session:
        repository = ContractRepository(session)
        contract = await _get(repository, workspace_id, contract_id)
        counts = await repository.violation_counts([contract.id])
    return contract, counts.get(contract.id, 0)


@blueprint.get("/<contract_id>")
@master_key_for_workspace
@document_response(ContractOut)
async def get_contract(workspace_id: uuid.UUID, contract_id: str) -> Response:
    contract, count = await _load(workspace_id, contract_id)
    return json_response(contract_json(contract, count))


@blueprint.put("/<contract_id>")
@master_key_for_workspace
@json_body(UpdateContract)
@document_response(ContractOut)
async def update_contract(workspace_id: uuid.UUID, contract_id: str, body: UpdateContract) -> Response:
    """Change any fields (`status: archived` stops enforcement and keeps the violations)."""
    changes = body.model_dump(exclude_unset=True)
    reject_nulls(changes, ("name", "event_type", "schema_definition", "enforcement_mode", "undeclared_fields", "status"))
    schema = compiled_schema(changes["schema_definition"]) if "schema_definition" in changes else None
    try:
        async with services().transaction() as session:
            repository = ContractRepository(session)
            contract = await _get(repository, workspace_id, contract_id, for_update=True)
            for name, value in changes.items():
                setattr(contract, name, value)
            check_name_fits_type(contract.event_type, contract.event_name)
            if schema is not None:
                contract.json_schema = schema
            contract.version += 1
            contract.updated_at = datetime.now().astimezone()
            await session.flush()
            counts = await repository.violation_counts([contract.id])
    except IntegrityError:
        raise already_active() from None
    services().contracts.forget(workspace_id)
    return json_response(contract_json(contract, counts.get(contract.id, 0)))


@blueprint.delete("/<contract_id>")
@master_key_for_workspace
async def delete_contract(workspace_id: uuid.UUID, contract_id: str) -> Response:
    """Delete a contract and its violations (archive it to keep them)."""
    async with services().transaction() as session:
        repository = ContractRepository(session)
        contract = await _get(repository, workspace_id, contract_id, for_update=True)
        await repository.delete(contract)
    services().contracts.forget(workspace_id)
    return Response(status=204)


@blueprint.get("/<contract_id>/violations")
@master_key_for_workspace
@document_querystring(ViolationQuery)
@document_response(ViolationPage)
async def list_violations(workspace_id: uuid.UUID, contract_id: str) -> Response:
    """Newest first, keyset-paginated; `?group_by=path,kind` returns counts instead:
    `{"data": [{"path", "kind", "count"}]}`."""
    query: ViolationQuery = parse_query(ViolationQuery)
    filters = ViolationFilters(since=query.since, kind=query.kind, path=query.path)
    async with services().transaction() as session:
        repository = ContractRepository(session)
        contract = await _get(repository, workspace_id, contract_id)
        if query.group_by:
            groups = await repository.violation_groups(contract.id, filters, [p.strip() for p in query.group_by.split(",")])
            return json_response({"data": groups, "next_cursor": None})
        before = decoded_cursor(query.cursor, decode_seq_pair_cursor)
        page, next_cursor = await repository.violations(contract.id, filters, limit=query.limit, before=before)
    return json_response({"data": page, "next_cursor": next_cursor})


# --- enforcement, in the ingest path ---------------------------------------------------------
