"""The viewer for your customers: a page that shows one tenant's audit events and nothing else,
for a workspace to embed in its own product.

- `POST /api/v1/workspaces/{id}/viewer-tokens` (master key) `{"tenant_id", "ttl_seconds"}` →
  `{"token", "expires_at", "url"}`: a `vt_` token (web/key_tokens.py) naming the workspace, the
  tenant and the key that made it; an hour by default, a day at most; revoking the key voids it.
- `GET /viewer?token=…`: the page (search, filters by action, category, actor and time, event
  detail, CSV download), framable only by HEADWATER_VIEWER_FRAME_ANCESTORS.
- `GET /api/v1/viewer/events`, `/events/{id}`, `/events/export`: what the page calls, with the
  token as a bearer. The workspace, the tenant and the event type (`audit`) come from the token
  alone; the query names only the filters below (anything else is a 400), so no parameter can
  reach another tenant's events.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, g, render_template, request
from quart_schema import document_querystring, document_response, hide, security_scheme

from models.events import EventFilters, EventRepository, decode_cursor
from models.timestamps import IsoDateTime, iso
from web import key_tokens
from web.auth import bearer_token, master_key_for_workspace
from web.errors import APIError
from web.events import EventPage, exported, streamed
from web.jsonio import decoded_cursor, json_body, parse_query
from web.responses import json_response
from web.services import services

TOKEN_PREFIX = "vt_"
DEFAULT_TTL, MAX_TTL = 3600, 86400

tokens = Blueprint("viewer_tokens", __name__, url_prefix="/api/v1/workspaces/<workspace_id>/viewer-tokens")
api = Blueprint("viewer_api", __name__, url_prefix="/api/v1/viewer")
page = Blueprint("viewer", __name__, url_prefix="/viewer", template_folder="templates",
                 static_folder=str(Path(__file__).parent / "static" / "viewer"), static_url_path="/static")


# --- tokens --------------------------------------------------------------------------------------

class CreateViewerToken(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant_id: str = Field(min_length=1, max_length=256)
    ttl_seconds: int = Field(default=DEFAULT_TTL, ge=60, le=MAX_TTL)


class ViewerTokenOut(BaseModel):
    token: str
    tenant_id: str
    expires_at: str
    url: str
    request_id: str


@tokens.post("")
@master_key_for_workspace
@json_body(CreateViewerToken)
@document_response(ViewerTokenOut, 201)
async def create_viewer_token(workspace_id: uuid.UUID, body: CreateViewerToken) -> Response:
    """A token that shows one tenant's audit events in the viewer (`url`), for `ttl_seconds`
    (default 3600, at most 86400). Revoking the master key that made it voids it."""
    expires = int(time.time()) + body.ttl_seconds
    token = key_tokens.sign(TOKEN_PREFIX, g.master_key, expires, t=body.tenant_id)
    return json_response({"token": token, "tenant_id": body.tenant_id,
                          "expires_at": iso(datetime.fromtimestamp(expires, UTC)), "url": f"/viewer?token={token}"},
                         201)


@dataclass(frozen=True)
class Viewing:
    workspace_id: uuid.UUID
    tenant_id: str
    expires: int


async def viewing(token: str) -> Viewing:
    invalid = APIError(401, "invalid_viewer_token", "The viewer token is not valid or has expired; ask for a new one.")
    claims = await key_tokens.verify(TOKEN_PREFIX, token, invalid)
    if not isinstance(claims.get("t"), str):
        raise invalid
    return Viewing(claims["w"], claims["t"], int(claims["e"]))


# --- the API the page calls ----------------------------------------------------------------------

class ViewerFilters(BaseModel):
    """Everything the viewer can be asked for. No workspace, tenant or type: the token says."""

    model_config = ConfigDict(extra="forbid")
    q: str | None = Field(default=None, max_length=200)  # text anywhere in the event, any case
    action: str | None = Field(default=None, max_length=256)
    category: str | None = Field(default=None, max_length=64)
    actor_id: str | None = Field(default=None, max_length=256)
    since: IsoDateTime | None = None
    until: IsoDateTime | None = None


class ViewerQuery(ViewerFilters):
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = None


class ViewerExportQuery(ViewerFilters):
    format: str = Field(default="csv", pattern="^csv$")


def scoped(viewer: Viewing, query: ViewerFilters) -> EventFilters:
    """The tenant's audit events, narrowed by the query's filters."""
    return EventFilters(type="audit", tenant_id=viewer.tenant_id, name=query.action, category=query.category,
                        actor_id=query.actor_id, since=query.since, until=query.until)


@api.get("/events")
@security_scheme([{"viewerToken": []}])
@document_querystring(ViewerQuery)
@document_response(EventPage)
async def viewer_events() -> Response:
    """The token's tenant's audit events, newest first."""
    viewer = await viewing(bearer_token())
    query: ViewerQuery = parse_query(ViewerQuery)
    before = decoded_cursor(query.cursor, decode_cursor)
    async with services().transaction() as session:
        data, next_cursor = await EventRepository(session).page(viewer.workspace_id, scoped(viewer, query),
                                                                query.limit, before, query.q)
    return json_response({"data": data, "next_cursor": next_cursor})


@api.get("/events/<event_id:event_id>")
@security_scheme([{"viewerToken": []}])
async def viewer_event(event_id: str) -> Response:
    """One of the tenant's audit events (404 for any other event, whoever's it is)."""
    viewer = await viewing(bearer_token())
    async with services().transaction() as session:
        event = await EventRepository(session).find(viewer.workspace_id, scoped(viewer, ViewerFilters()), event_id[:64])
    if event is None:
        raise APIError(404, "event_not_found", "No such event.")
    return json_response(event)


@api.get("/events/export")
@security_scheme([{"viewerToken": []}])
@document_querystring(ViewerExportQuery)
async def viewer_export() -> Response:
    """The tenant's audit events matching the filters, as CSV (oldest first)."""
    viewer = await viewing(bearer_token())
    query: ViewerExportQuery = parse_query(ViewerExportQuery)
    return streamed("audit-events", "csv", exported(services().sessions, viewer.workspace_id, scoped(viewer, query),
                                                    "csv", containing=query.q))


# --- the page ------------------------------------------------------------------------------------

@page.get("")
@hide
async def viewer_page() -> Response:
    token = request.args.get("token", "")
    try:
        viewer = await viewing(token)
    except APIError:
        html = await render_template("viewer/expired.html")
        return Response(html, status=401, content_type="text/html")
    html = await render_template("viewer/viewer.html", tenant_id=viewer.tenant_id,
                                 expires_at=iso(datetime.fromtimestamp(viewer.expires, UTC)))
    return Response(html, content_type="text/html")


@page.after_request
async def viewer_headers(response: Response) -> Response:
    ancestors = " ".join(services().settings.viewer_frame_ancestors) or "'none'"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        f"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors {ancestors}")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"  # the address carries the token
    response.headers["Cache-Control"] = "no-store"
    return response
