"""The console at `/console/`: server-rendered pages (Jinja) with small JavaScript modules for
what is live. The pages are shells around the same JSON API scripts use: the modules call
`/api/v1/...` with the session cookie and the CSRF token, so every console action is an API
call anyone can script, and the console cannot do what the API cannot.

Sign-in takes a master key and makes a server-side session (models.console_sessions); the
cookie is HttpOnly, SameSite=Lax, Secure over https. Forms that change something carry the
session's CSRF token; sign-in and sign-up, made before a session exists, check `Origin`.
Every answer here carries a strict Content-Security-Policy (no inline script or style) and
the other headers a page of secrets wants.
"""

from __future__ import annotations

import hmac
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from quart import Blueprint, Response, redirect, render_template, request
from quart_schema import hide

from models.canonical import EVENT_TYPES
from models.console_sessions import ConsoleSessionRepository, SignedIn
from models.rate_limits import LimitExceeded, consume
from models.workspaces import MasterKeyRepository, WorkspaceRepository
from web.auth import SESSION_COOKIE, console_session, plausible_master_key
from web.clientip import client_ip
from web.services import services

STATIC = Path(__file__).parent / "static" / "console"
blueprint = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
                      static_folder=str(STATIC), static_url_path="/static")
root = Blueprint("console_root", __name__)

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

PAGES = {  # path → (template, title, nav label)
    "": ("overview.html", "Overview"),
    "claim": ("claim.html", "Claim a stream"),
    "events": ("events.html", "Events"),
    "live": ("live.html", "Live debugger"),
    "sources": ("sources.html", "Sources"),
    "contracts": ("contracts.html", "Contracts"),
    "transformations": ("transformations.html", "Transformations"),
    "rules": ("rules.html", "Destinations and rules"),
}


@root.get("/")
@hide
async def index() -> Response:
    return redirect("/console/")  # type: ignore[return-value]


@blueprint.after_request
async def security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    # same-origin, not no-referrer: with no-referrer Chromium sends `Origin: null` on our own form posts.
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    if response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"
    return response


def _same_origin() -> bool:
    """A form post made before a session exists must come from this site's own page."""
    origin = request.headers.get("Origin")
    if origin is None:  # browsers send Origin on every POST; a script without one has no cookie to abuse
        return True
    return urlsplit(origin).netloc == request.host


def _secure() -> bool:
    return request.scheme == "https" or request.headers.get("X-Forwarded-Proto") == "https"


def _lifetime() -> timedelta:
    return timedelta(hours=services().settings.console_session_hours)


def _signed_in_response(target: Response, secret: str) -> Response:
    target.set_cookie(SESSION_COOKIE, secret, max_age=int(_lifetime().total_seconds()), httponly=True,
                      samesite="Lax", secure=_secure(), path="/")
    return target


async def _page(path: str, signed_in: SignedIn) -> str:
    template, title = PAGES[path]
    settings = services().settings
    return await render_template(f"console/{template}", title=title, page=path, pages=PAGES,
                                 workspace_id=str(signed_in.key.workspace_id), csrf_token=signed_in.csrf_token,
                                 key_prefix=signed_in.key.prefix, temporal_ui_url=settings.temporal_ui_url or "",
                                 temporal_namespace=settings.temporal_namespace, event_types=EVENT_TYPES)


def _register_page(path: str) -> None:
    async def page() -> Response | str:
        signed_in = await console_session()
        if signed_in is None:
            return redirect("/console/sign-in")  # type: ignore[return-value]
        return await _page(path, signed_in)

    page.__name__ = f"page_{path or 'overview'}"
    blueprint.get(f"/{path}")(hide(page))


for _path in PAGES:
    _register_page(_path)


# --- signing in and out ----------------------------------------------------------------------

async def _form(template: str, title: str, status: int = 200, error: str | None = None,
                **context: object) -> tuple[str, int]:
    """A sign-in or sign-up page, with the error that sent the user back to it."""
    return await render_template(f"console/{template}", title=title, error=error,
                                 signup_open=services().settings.signup == "open", **context), status


@blueprint.get("/sign-in")
@hide
async def sign_in_form() -> tuple[str, int]:
    return await _form("sign_in.html", "Sign in")


@blueprint.post("/sign-in")
@hide
async def sign_in() -> Response | tuple[str, int]:
    form = await request.form
    secret = (form.get("master_key") or "").strip()

    async def refuse(message: str, status: int) -> tuple[str, int]:
        return await _form("sign_in.html", "Sign in", status, message)

    if not _same_origin():
        return await refuse("This form must be sent from Headwater's own page.", 403)
    if not plausible_master_key(secret):
        return await refuse("That is not a master key (they start with mk_).", 401)
    async with services().transaction() as session:
        key = await MasterKeyRepository(session).authenticate(secret)
        if key is None:
            return await refuse("Unknown or revoked master key.", 401)
        cookie, _ = await ConsoleSessionRepository(session).start(key, _lifetime())
    return _signed_in_response(redirect("/console/"), cookie)  # type: ignore[arg-type]


@blueprint.post("/sign-out")
@hide
async def sign_out() -> Response:
    form = await request.form
    signed_in = await console_session()
    secret = request.cookies.get(SESSION_COOKIE, "")
    if signed_in is not None and hmac.compare_digest((form.get("csrf_token") or "").encode(),
                                                     signed_in.csrf_token.encode()):
        async with services().transaction() as session:
            await ConsoleSessionRepository(session).end(secret)
    elif signed_in is not None:
        return Response("Missing or wrong CSRF token.", 403, content_type="text/plain")
    response = redirect("/console/sign-in")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response  # type: ignore[return-value]


# --- signing up ----------------------------------------------------------------------------------

@blueprint.get("/sign-up")
@hide
async def sign_up_form() -> tuple[str, int]:
    return await _form("sign_up.html", "Sign up")


@blueprint.post("/sign-up")
@hide
async def sign_up() -> Response | tuple[str, int] | str:
    svc = services()
    settings = svc.settings
    form = await request.form
    name = (form.get("workspace") or "").strip()
    operator_token = (form.get("operator_token") or "").strip()
    is_operator = bool(settings.admin_token and operator_token
                       and hmac.compare_digest(operator_token.encode(), settings.admin_token.encode()))

    async def refuse(message: str, status: int) -> tuple[str, int]:
        return await _form("sign_up.html", "Sign up", status, message, name=name)

    if not _same_origin():
        return await refuse("This form must be sent from Headwater's own page.", 403)
    if operator_token and not is_operator:
        return await refuse("The operator token is not valid.", 401)
    if settings.signup != "open" and not is_operator:
        return await refuse("Sign-up is closed here: ask your operator, or give the operator token.", 403)
    if not 1 <= len(name) <= 200:
        return await refuse("Give the workspace a name (1 to 200 characters).", 422)
    async with svc.transaction() as session:
        if not is_operator:
            try:
                await consume(session, key=f"signups:{client_ip(settings.trusted_proxies)}", window=timedelta(days=1),
                              limit=settings.signups_per_day, code="rate_limited", what="Sign-ups per day from this IP")
            except LimitExceeded:
                return await refuse("Too many sign-ups from this address today; try again tomorrow.", 429)
        if await WorkspaceRepository(session).find_by_name(name) is not None:
            return await refuse("A workspace with that name exists; choose another.", 409)
        workspace = await WorkspaceRepository(session).create(name)
        issued = await MasterKeyRepository(session).issue(workspace.id, "console")
        cookie, csrf = await ConsoleSessionRepository(session).start(issued.key, _lifetime())
    page = await render_template("console/signed_up.html", title="Your master key", secret=issued.secret,
                                 workspace_id=str(workspace.id), workspace_name=name, csrf_token=csrf)
    return _signed_in_response(Response(page, 201, content_type="text/html; charset=utf-8"), cookie)

