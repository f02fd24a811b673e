"""Destinations (`/api/v1/workspaces/{id}/destinations`, master key): where forwarding rules
send events. `webhook` (signed per Standard Webhooks, one event or a JSON array per request),
`segment` (any Segment-compatible `/v1/batch`) or `postgres` (a warehouse: tables in another
Postgres that follow the events, forwarding/warehouse.py)."""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator
from quart import Blueprint, Response
from quart_schema import document_querystring, document_response

from forwarding.delivery import PrivateDestination, check_public
from forwarding.warehouse import masked_dsn
from models.forwarding import Destination, ForwardingRepository, max_in_flight
from models.timestamps import iso
from web.auth import master_key_for_workspace, parse_uuid
from web.errors import APIError
from web.jsonio import PageQuery, json_body, parse_created_page, reject_nulls, validation_details
from web.responses import json_response
from web.services import services

blueprint = Blueprint("destinations", __name__, url_prefix="/api/v1/workspaces/<workspace_id>/destinations")

SECRET_OVERLAP = timedelta(hours=24)  # a rotated-out secret keeps signing this long
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
RESERVED_HEADERS = {"webhook-id", "webhook-timestamp", "webhook-signature", "content-length", "host",
                    "transfer-encoding", "connection"}


class RetryConfig(BaseModel):
    timeout_ms: int = Field(default=10_000, ge=100, le=60_000)
    max_attempts: int = Field(default=8, ge=1, le=100)  # at least this many tries before a dead letter...
    max_retry_age_seconds: int = Field(default=86_400, ge=0, le=30 * 86_400)  # ...and at least this old


class WebhookConfig(RetryConfig):
    model_config = ConfigDict(extra="forbid")
    url: AnyHttpUrl
    method: Literal["POST", "PUT"] = "POST"
    headers: dict[Annotated[str, StringConstraints(min_length=1, max_length=200)],
                  Annotated[str, StringConstraints(max_length=4000)]] = {}
    mode: Literal["single", "batch"] = "single"
    max_batch_size: int = Field(default=100, ge=1, le=1000)
    # Requests in flight at once; unset: 10 in single mode, 1 in batch mode. With 1, events
    # arrive in ingest order; with more, events of one batch may arrive out of order.
    max_in_flight: int | None = Field(default=None, ge=1, le=64)

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = sorted(h for h in value if h.lower() in RESERVED_HEADERS)
        if reserved:
            raise ValueError(f"these headers are set by Headwater: {', '.join(reserved)}")
        return value


class SegmentConfig(RetryConfig):
    model_config = ConfigDict(extra="forbid")
    host: AnyHttpUrl
    write_key: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    max_batch_size: int = Field(default=100, ge=1, le=500)


class PostgresConfig(RetryConfig):
    """A warehouse: tables in another Postgres that follow the events (forwarding/warehouse.py)."""
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    dsn: Annotated[str, StringConstraints(min_length=1, max_length=2000)]  # its password is never shown again
    target_schema: Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]{0,62}$")] = Field(
        default="headwater", alias="schema")
    table_per: Literal["event", "type"] = "event"
    max_batch_size: int = Field(default=10_000, ge=1, le=10_000)

    @field_validator("dsn")
    @classmethod
    def _dsn(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("postgres", "postgresql") or not parts.hostname:
            raise ValueError("a postgresql://user:password@host:port/database URL")
        return value


CONFIGS: dict[str, type[RetryConfig]] = {"webhook": WebhookConfig, "segment": SegmentConfig,
                                         "postgres": PostgresConfig}
TARGETS = {"webhook": "url", "segment": "host", "postgres": "dsn"}  # whose host the private-address guard checks


class CreateDestination(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    type: Literal["webhook", "segment", "postgres"]
    config: dict[str, Any]
    enabled: bool = True


class UpdateDestination(BaseModel):
    """Any subset; `config` keys given replace those stored (the type cannot change)."""
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    config: dict[str, Any] | None = None
    enabled: bool | None = None


class DestinationOut(BaseModel):
    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    type: str
    config: dict[str, Any]
    enabled: bool
    signing_secret: str | None = None  # webhooks: on create and GET by id, never in lists
    previous_secret_expires_at: str | None = None
    created_at: str
    updated_at: str


def new_signing_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def destination_json(d: Destination, *, with_secret: bool) -> dict[str, Any]:
    config = d.config
    if d.type == "webhook":  # the value in force where the default applies
        config = {**config, "max_in_flight": max_in_flight(d.type, config)}
    if d.type == "postgres":
        config = {**config, "dsn": masked_dsn(config["dsn"])}
    body = {"id": str(d.id), "workspace_id": str(d.workspace_id), "name": d.name, "type": d.type, "config": config,
            "enabled": d.enabled, "created_at": iso(d.created_at), "updated_at": iso(d.updated_at)}
    if with_secret and d.type == "webhook":
        body["signing_secret"] = d.signing_secret
        body["previous_secret_expires_at"] = (iso(d.previous_secret_expires_at)
                                              if d.previous_secret_signs(datetime.now(UTC)) else None)
    return body


def destination_not_found() -> APIError:
    return APIError(404, "destination_not_found", "No such destination.")


async def valid_config(destination_type: str, config: dict[str, Any]) -> dict[str, Any]:
    """The config with its defaults, checked; 422 naming each bad field, or a private address."""
    try:
        parsed = CONFIGS[destination_type].model_validate(config)
    except ValidationError as exc:
        details = validation_details(exc, "config.")
        raise APIError(422, "validation_failed", f"Invalid config: {', '.join(d['field'] for d in details)}",
                       details) from None
    checked = parsed.model_dump(mode="json", by_alias=True)
    if not services().settings.allow_private_destinations:
        try:
            await check_public(checked[TARGETS[destination_type]])
        except PrivateDestination as exc:
            raise APIError(422, "private_destination", f"Refused: {exc}. Set HEADWATER_ALLOW_PRIVATE_DESTINATIONS="
                           "true to allow it (for local development).") from None
    return checked


@blueprint.get("")
@master_key_for_workspace
@document_querystring(PageQuery)
async def list_destinations(workspace_id: uuid.UUID) -> Response:
    """The workspace's destinations, oldest first, keyset-paginated (signing secrets are not listed)."""
    query, after = parse_created_page()
    async with services().transaction() as session:
        rows, next_cursor = await ForwardingRepository(session).destinations(workspace_id, query.limit, after)
    return json_response({"data": [destination_json(d, with_secret=False) for d in rows], "next_cursor": next_cursor})


@blueprint.post("")
@master_key_for_workspace
@json_body(CreateDestination)
@document_response(DestinationOut, 201)
async def create_destination(workspace_id: uuid.UUID, body: CreateDestination) -> Response:
    """Create a destination; a webhook gets its signing secret (`whsec_...`), shown here."""
    config = await valid_config(body.type, body.config)
    async with services().transaction() as session:
        destination = await ForwardingRepository(session).add(Destination(
            id=uuid.uuid4(), workspace_id=workspace_id, name=body.name, type=body.type, config=config,
            enabled=body.enabled, signing_secret=new_signing_secret() if body.type == "webhook" else None))
    return json_response(destination_json(destination, with_secret=True), 201)


async def _get(session, workspace_id: uuid.UUID, destination_id: str, *, for_update: bool = False) -> Destination:
    destination = await ForwardingRepository(session).destination(
        workspace_id, parse_uuid(destination_id, destination_not_found()), for_update=for_update)
    if destination is None:
        raise destination_not_found()
    return destination


@blueprint.get("/<destination_id>")
@master_key_for_workspace
@document_response(DestinationOut)
async def get_destination(workspace_id: uuid.UUID, destination_id: str) -> Response:
    async with services().transaction() as session:
        destination = await _get(session, workspace_id, destination_id)
    return json_response(destination_json(destination, with_secret=True))


@blueprint.put("/<destination_id>")
@master_key_for_workspace
@json_body(UpdateDestination)
@document_response(DestinationOut)
async def update_destination(workspace_id: uuid.UUID, destination_id: str, body: UpdateDestination) -> Response:
    """Change the name, `enabled`, or config keys; rules use the change from their next batch."""
    changes = body.model_dump(exclude_unset=True)
    reject_nulls(changes, ("name", "config", "enabled"))
    async with services().transaction() as session:
        destination = await _get(session, workspace_id, destination_id, for_update=True)
        if "config" in changes:
            given = changes.pop("config")
            if destination.type == "postgres" and given.get("dsn") == masked_dsn(destination.config["dsn"]):
                given["dsn"] = destination.config["dsn"]  # the config as read, sent back: the password stays
            destination.config = await valid_config(destination.type, {**destination.config, **given})
        for name, value in changes.items():
            setattr(destination, name, value)
        destination.updated_at = datetime.now(UTC)
        await session.flush()
    return json_response(destination_json(destination, with_secret=True))


@blueprint.delete("/<destination_id>")
@master_key_for_workspace
async def delete_destination(workspace_id: uuid.UUID, destination_id: str) -> Response:
    """Delete a destination no forwarding rule points at (409 otherwise)."""
    async with services().transaction() as session:
        destination = await _get(session, workspace_id, destination_id, for_update=True)
        if await ForwardingRepository(session).rules_using(destination_id=destination.id):
            raise APIError(409, "destination_in_use", "Forwarding rules send to this destination; delete or "
                           "re-point them first.")
        await session.delete(destination)
    return Response(status=204)


@blueprint.post("/<destination_id>/rotate-secret")
@master_key_for_workspace
@document_response(DestinationOut)
async def rotate_secret(workspace_id: uuid.UUID, destination_id: str) -> Response:
    """A new signing secret; the old one keeps signing beside it for 24 h, so receivers can
    switch without losing a request (`webhook-signature` carries both)."""
    async with services().transaction() as session:
        destination = await _get(session, workspace_id, destination_id, for_update=True)
        if destination.type != "webhook":
            raise APIError(422, "not_a_webhook", "Only webhook destinations sign their requests.")
        now = datetime.now(UTC)
        destination.previous_secret = destination.signing_secret
        destination.previous_secret_expires_at = now + SECRET_OVERLAP
        destination.signing_secret = new_signing_secret()
        destination.updated_at = now
        await session.flush()
    return json_response(destination_json(destination, with_secret=True))
