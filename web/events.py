"""The workspace events API: newest first, filtered, keyset-paginated."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from quart import Blueprint, Response
from quart_schema import document_querystring, document_response

from models.events import EventFilters, EventRepository, decode_cursor
from models.timestamps import parse_iso
from web.auth import master_key_for_workspace
from web.errors import APIError
from web.jsonio import parse_query
from web.responses import json_response
from web.services import services

blueprint = Blueprint("events", __name__, url_prefix="/api/v1/workspaces/<workspace_id>/events")

MAX_LIMIT = 1000


class EventQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=100, ge=1, le=MAX_LIMIT)
    cursor: str | None = None
    type: str | None = None
    name: str | None = None
    category: str | None = None
    source_id: uuid.UUID | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    actor_id: str | None = None
    tenant_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @field_validator("since", "until", mode="before")
    @classmethod
    def _iso(cls, value: Any) -> Any:
        return parse_iso(value) if isinstance(value, str) else value


class EventOut(BaseModel):
    """The canonical event; which fields are present depends on `type`."""

    model_config = ConfigDict(extra="allow")
    id: str
    type: str
    name: str | None = None
    timestamp: str
    received_at: str


class EventPage(BaseModel):
    data: list[EventOut]
    next_cursor: str | None
    request_id: str


@blueprint.get("")
@master_key_for_workspace
@document_querystring(EventQuery)
@document_response(EventPage)
async def list_events(workspace_id: uuid.UUID) -> Response:
    """The workspace's events, newest first. Pass `next_cursor` back as `cursor` for the next page."""
    query: EventQuery = parse_query(EventQuery)
    try:
        before = decode_cursor(query.cursor) if query.cursor else None
    except ValueError:
        raise APIError(400, "invalid_cursor", "The cursor is not one this API issued.") from None
    filters = EventFilters(**query.model_dump(exclude={"limit", "cursor"}))
    async with services().transaction() as session:
        data, next_cursor = await EventRepository(session).page(workspace_id, filters, query.limit, before)
    return json_response({"data": data, "next_cursor": next_cursor})


@blueprint.get("/<event_id>")
@master_key_for_workspace
@document_response(EventOut)
async def get_event(workspace_id: uuid.UUID, event_id: str) -> Response:
    async with services().transaction() as session:
        event = await EventRepository(session).get(workspace_id, event_id[:64])
    if event is None:
        raise APIError(404, "event_not_found", "No such event in this workspace.")
    return json_response(event)
