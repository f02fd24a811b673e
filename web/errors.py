"""One error type for the whole API, and the handlers that turn every failure into the JSON
error shape: `{"error": {"code", "message", "details"}, "request_id"}`."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from quart import Quart, Response
from quart_schema import RequestSchemaValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from telemetry import metrics
from web.responses import json_response

log = logging.getLogger("headwater.web")


class APIError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def error_payload(error: APIError) -> dict[str, Any]:
    """The body of an error answer (every error answer is made here, the ingest lane's too)."""
    if error.status == 503:
        metrics.count(metrics.UNAVAILABLE, error.code)
    body: dict[str, Any] = {"error": {"code": error.code, "message": error.message}}
    if error.details is not None:
        body["error"]["details"] = error.details
    return body


def error_response(error: APIError) -> Response:
    response = json_response(error_payload(error), error.status)
    response.headers.update(error.headers)
    return response


_HTTP_CODES = {
    400: ("bad_request", "The request could not be understood."),
    404: ("not_found", "No such route."),
    405: ("method_not_allowed", "This route does not accept that method."),
    408: ("request_timeout", "The request body took too long to arrive."),
    413: ("payload_too_large", "The request body is too large."),
    415: ("unsupported_media_type", "Send a JSON body with Content-Type: application/json."),
}


def register_error_handlers(app: Quart) -> None:
    @app.errorhandler(APIError)
    async def api_error(error: APIError) -> Response:
        return error_response(error)

    @app.errorhandler(RequestSchemaValidationError)
    async def schema_error(error: RequestSchemaValidationError) -> Response:
        return error_response(APIError(400, "invalid_query", "The query string is not valid.",
                                       details=str(error.validation_error)))

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        code, message = _HTTP_CODES.get(status, ("http_error", error.description or "HTTP error."))
        headers = {}
        allowed = getattr(error, "valid_methods", None)  # a 405's
        if status == 405 and allowed:
            headers["Allow"] = ", ".join(allowed)
        return error_response(APIError(status, code, message, headers=headers))

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        return error_response(failure(error))


STORAGE_ERRORS = (OperationalError, InterfaceError, OSError, PoolTimeout, asyncpg.InterfaceError)
# SQLSTATE classes that say the server cannot serve now, not that the statement was wrong:
# 08 connection exception; 57P operator intervention (shutting down, "the database system is
# starting up", "not yet accepting connections"); 53 insufficient resources (too many
# connections, disk full). asyncpg raises them as plain PostgresErrors, and SQLAlchemy wraps
# those as a bare DBAPIError, so the class is read from the SQLSTATE.
UNAVAILABLE_SQLSTATES = ("08", "57P", "53")


# A string Postgres cannot hold (U+0000, or a character its encoding lacks) that reached a
# query through a door no check covered: the client's input, not the server, is at fault.
UNSTORABLE_STRING_SQLSTATES = ("22021", "22P05")


def _sqlstate(error: BaseException) -> str | None:
    if isinstance(error, DBAPIError):
        error = error.orig or error
    sqlstate = getattr(error, "sqlstate", None)
    return sqlstate if isinstance(sqlstate, str) else None


def storage_unavailable(error: BaseException) -> bool:
    if isinstance(error, STORAGE_ERRORS):
        return True
    sqlstate = _sqlstate(error)
    return sqlstate is not None and sqlstate.startswith(UNAVAILABLE_SQLSTATES)


def failure(error: Exception) -> APIError:
    """What an exception nobody turned into an APIError answers: 503 when the database is not
    answering (nothing was stored; retry), otherwise a logged 500 that shows no internals."""
    if storage_unavailable(error):
        log.error("storage unavailable: %s", error)
        return APIError(503, "storage_unavailable", "The database is not answering; nothing was stored. "
                        "Retry shortly.", headers={"Retry-After": "1"})
    if _sqlstate(error) in UNSTORABLE_STRING_SQLSTATES:
        log.warning("a request carried a string Postgres cannot hold: %s", error)
        return APIError(400, "invalid_string", "A value holds a character that cannot be stored (such as U+0000); "
                        "nothing was stored.")
    log.error("unhandled error", exc_info=error)
    return APIError(500, "internal_error", "Something went wrong on our side.")
