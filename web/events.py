"""The workspace events API: the list (newest first, filtered, keyset-paginated), the NDJSON
export, and the hourly volume. The live stream is in `web.live`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response
from quart_schema import document_querystring, document_response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from werkzeug.routing import BaseConverter

from audit.log import AuditLedger
from models.event_csv import csv_text
from models.events import EventFilters, EventRepository, decode_cursor, export_line, export_line_of
from models.volume import VolumeRepository
from web.auth import master_key_for_workspace
from web.errors import APIError
from web.jsonio import decoded_cursor, parse_query
from web.responses import json_response
from web.services import services


class EventIdConverter(BaseConverter):
    """An event id in a path: `evt_` and its ULID (what models.ids makes)."""

    regex = r"evt_[0-9A-Za-z]{1,60}"


blueprint = Blueprint("events", __name__, url_prefix="/api/v1/workspaces/<workspace_id>/events")

MAX_LIMIT = 1000
EXPORT_PAGE = 1000


class EventQuery(EventFilters):
    limit: int = Field(default=100, ge=1, le=MAX_LIMIT)
    cursor: str | None = None


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
    query, before = parse_event_query()
    filters = EventFilters(**query.model_dump(exclude={"limit", "cursor"}))
    async with services().transaction() as session:
        data, next_cursor = await EventRepository(session).page(workspace_id, filters, query.limit, before)
    return json_response({"data": data, "next_cursor": next_cursor})


class VolumeQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hours: int = Field(default=24, ge=1, le=720)


class VolumeRow(BaseModel):
    event_type: str
    event_name: str | None
    hour_bucket: str
    event_count: int


def parse_event_query(model: type[EventQuery | ExportQuery] = EventQuery) -> tuple[Any, str | None]:
    query = parse_query(model)
    return query, decoded_cursor(query.cursor, decode_cursor)


@blueprint.get("/volume")
@master_key_for_workspace
@document_querystring(VolumeQuery)
@document_response(list[VolumeRow])
async def event_volume(workspace_id: uuid.UUID) -> Response:
    """Exact hourly counts for the last `hours` hours (1–720, default 24; the current hour is
    the last of them), oldest first, then by type and name; only hours that have events.
    Events count in the hour they were received (claimed stream events too)."""
    query: VolumeQuery = parse_query(VolumeQuery)
    async with services().transaction() as session:
        rows = await VolumeRepository(session).hourly(workspace_id, query.hours)
    return json_response(rows)


class ExportQuery(EventFilters):
    cursor: str | None = None  # the export has no page size: it streams everything that matches
    # The first `tree_size` leaves of the audit log, in its order: what `headwater audit
    # verify` checks against the tree head of that size. No filters with it.
    tree_size: int | None = Field(default=None, ge=0, le=2**62)
    format: Literal["ndjson", "csv"] = "ndjson"


@blueprint.get("/export")
@master_key_for_workspace
@document_querystring(ExportQuery)
async def export_events(workspace_id: uuid.UUID) -> Response:
    """Every matching event as NDJSON (one canonical event per line), oldest first, streamed
    in keyset pages of 1,000 so memory stays flat whatever the size. Same filters as the list;
    `cursor` resumes after the last id of an earlier export. `format=csv`: the same events as
    CSV rows, audit columns flattened (docs/observing.md)."""
    query, after = parse_event_query(ExportQuery)
    filters = EventFilters(**query.model_dump(exclude={"limit", "cursor", "tree_size", "format"}))
    if query.tree_size is not None:
        if filters != EventFilters() or after is not None or query.format != "ndjson":
            raise APIError(422, "invalid_query", "tree_size exports the log's leaves in order, as NDJSON: no filters, "
                                                 "cursor or format.")
        return streamed(f"events-{workspace_id}", "ndjson",
                        leaf_lines(AuditLedger(services().sessions), workspace_id, query.tree_size))
    return streamed(f"events-{workspace_id}", query.format,
                    exported(services().sessions, workspace_id, filters, query.format, after))


CONTENT_TYPES = {"ndjson": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}


async def exported(sessions: async_sessionmaker[AsyncSession], workspace_id: uuid.UUID, filters: EventFilters,
                   kind: str, after: str | None = None, containing: str | None = None) -> AsyncIterator[bytes]:
    """The matching events, oldest first, in keyset pages of EXPORT_PAGE: NDJSON lines, or CSV
    rows after a header (the events export and the viewer's)."""
    if kind == "csv":
        yield csv_text([], header=True)
    while True:
        async with sessions() as session:
            rows = await EventRepository(session).ascending(workspace_id, filters, EXPORT_PAGE, after, containing)
        if not rows:
            return
        if kind == "csv":
            yield csv_text(body for _, body in rows)
        else:
            yield b"".join(export_line(body) + b"\n" for _, body in rows)
        if len(rows) < EXPORT_PAGE:
            return
        after = rows[-1][0]


def streamed(stem: str, kind: str, lines: AsyncIterator[bytes]) -> Response:
    """A download, streamed: `stem.kind`."""
    response = Response(lines, content_type=CONTENT_TYPES[kind])
    response.timeout = None  # as long as it takes
    response.headers["Content-Disposition"] = f'attachment; filename="{stem}.{kind}"'
    return response


async def leaf_lines(ledger: AuditLedger, workspace_id: uuid.UUID, tree_size: int) -> AsyncIterator[bytes]:
    """The audit log's first `tree_size` leaves' events, in leaf order; an event no longer
    stored has no line (and the root computed from the lines will not match)."""
    after = -1
    while True:
        leaves = await ledger.leaf_events(workspace_id, tree_size, after, EXPORT_PAGE)
        if not leaves:
            return
        yield b"".join(export_line_of(body) + b"\n" for _, _, body in leaves if body is not None)
        after = leaves[-1][0]


@blueprint.get("/<event_id:event_id>")
@master_key_for_workspace
@document_response(EventOut)
async def get_event(workspace_id: uuid.UUID, event_id: str) -> Response:
    async with services().transaction() as session:
        event = await EventRepository(session).get(workspace_id, event_id[:64])
    if event is None:
        raise APIError(404, "event_not_found", "No such event in this workspace.")
    return json_response(event)
