"""Event sources (`/event-keys`, the path kept for compatibility): the write keys of
source-keyed ingestion."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints
from quart import Blueprint, Response, g
from quart_schema import document_querystring, document_response

from models.canonical import Arrival, normalize
from models.ids import new_event_id
from models.pubsub import pubsub_topic
from models.sources import ACTIVE, EventSource, Redaction, SourceRepository
from models.timestamps import iso, utcnow
from web.auth import master_key_for_workspace, parse_uuid
from web.errors import APIError
from web.ingest import committed, queue_commit
from web.jsonio import PageQuery, json_body, parse_created_page, reject_nulls
from web.responses import json_response
from web.services import services

blueprint = Blueprint("sources", __name__, url_prefix="/api/v1/workspaces/<workspace_id>/event-keys")

TEST_EVENT_NAME = "Headwater Test Event"


SourceName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class CreateSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: SourceName
    # What arriving events have redacted: `audit` (audit events' free text, as streams do),
    # `all` (also every event's properties, traits and context) or `off`.
    redact: Redaction = Redaction.AUDIT


class UpdateSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: SourceName | None = None
    redact: Redaction | None = None


class SourceOut(BaseModel):
    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    key: str
    status: str
    redact: Redaction
    pubsub_topic: str
    last_used_at: datetime | None
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class SourceList(BaseModel):
    data: list[SourceOut]
    next_cursor: str | None
    request_id: str


class TestEventOut(BaseModel):
    id: str
    request_id: str


def source_json(source: EventSource) -> dict:
    return {
        "id": str(source.id), "workspace_id": str(source.workspace_id), "name": source.name, "key": source.key,
        "status": source.status, "redact": source.redact, "pubsub_topic": pubsub_topic(source.workspace_id),
        "last_used_at": iso(source.last_used_at), "created_by": str(source.created_by) if source.created_by else None,
        "created_at": iso(source.created_at), "updated_at": iso(source.updated_at),
    }


def source_not_found() -> APIError:
    return APIError(404, "source_not_found", "No such event source.")


@blueprint.get("")
@master_key_for_workspace
@document_querystring(PageQuery)
@document_response(SourceList)
async def list_sources(workspace_id: uuid.UUID) -> Response:
    """The workspace's sources, oldest first, keyset-paginated."""
    query, after = parse_created_page()
    async with services().transaction() as session:
        sources, next_cursor = await SourceRepository(session).page(workspace_id, query.limit, after)
    return json_response({"data": [source_json(s) for s in sources], "next_cursor": next_cursor})


@blueprint.post("")
@master_key_for_workspace
@json_body(CreateSource)
@document_response(SourceOut, 201)
async def create_source(workspace_id: uuid.UUID, body: CreateSource) -> Response:
    async with services().transaction() as session:
        source = await SourceRepository(session).create(workspace_id, body.name, g.master_key.id, body.redact)
    return json_response(source_json(source), 201)


@blueprint.put("/<key_id>")
@master_key_for_workspace
@json_body(UpdateSource)
@document_response(SourceOut)
async def update_source(workspace_id: uuid.UUID, key_id: str, body: UpdateSource) -> Response:
    """Rename a source or change its `redact` mode (in force on every API process within 2 s)."""
    changes = body.model_dump(exclude_unset=True)
    reject_nulls(changes, ("name", "redact"))
    async with services().transaction() as session:
        source = await SourceRepository(session).update(workspace_id, parse_uuid(key_id, source_not_found()), changes)
    if source is None:
        raise source_not_found()
    return json_response(source_json(source))


@blueprint.delete("/<key_id>")
@master_key_for_workspace
@document_response(SourceOut)
async def revoke_source(workspace_id: uuid.UUID, key_id: str) -> Response:
    """Revoke: the write key stops working on every API process within 2 s."""
    async with services().transaction() as session:
        source = await SourceRepository(session).revoke(workspace_id, parse_uuid(key_id, source_not_found()))
    if source is None:
        raise source_not_found()
    return json_response(source_json(source))


@blueprint.post("/<key_id>/test-event")
@master_key_for_workspace
@document_response(TestEventOut)
async def test_event(workspace_id: uuid.UUID, key_id: str) -> Response:
    """Send a synthetic track event through the real ingest path; answers with its id."""
    svc = services()
    async with svc.transaction() as session:
        source = await SourceRepository(session).get(workspace_id, parse_uuid(key_id, source_not_found()))
    if source is None:
        raise source_not_found()
    if source.status != ACTIVE:
        raise APIError(409, "source_revoked", "This source has been revoked.")
    event_id = new_event_id()
    event = normalize(
        {"type": "track", "event": TEST_EVENT_NAME, "anonymous_id": "headwater-test-event",
         "properties": {"source_name": source.name}, "context": {"library": {"name": "headwater-test-event"}}},
        event_type="track", event_id=event_id, arrival=Arrival(workspace_id, source.id, utcnow(), None),
    )
    duplicates = await committed(queue_commit(svc, [event]))
    return json_response({"id": duplicates.get(event_id, event_id)})
