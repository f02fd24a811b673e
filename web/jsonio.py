"""Reading JSON bodies strictly: content type, UTF-8, an object, no NUL; pydantic models
whose failures become 422s naming each field."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from quart import request
from quart_schema import document_request

from models.paging import CreatedPlace, decode_created_cursor
from models.timestamps import IsoDateTime  # noqa: F401 — re-exported for the web layer
from web.errors import APIError

Model = TypeVar("Model", bound=BaseModel)


def is_json_mimetype(mimetype: str) -> bool:
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


# Numbers: one rule at every door. Headwater keeps what comes back exactly as it went in through
# Postgres jsonb and orjson: every finite double, and every integer a 64-bit integer holds,
# signed or unsigned (-2^63 … 2^64-1). orjson would read a longer integer as a rounded double,
# so such an integer is refused at the door (400 `number_out_of_range`, naming the field)
# rather than stored altered. docs/api.md says the same to users.
INTEGER_MIN, INTEGER_MAX = -(2**63), 2**64 - 1
_LONG_DIGITS = re.compile(rb"\d{19}")  # an integer outside the range has at least 19 digits


def exact_numbers(raw: bytes) -> Any:
    """`raw` parsed with every integer kept exact (Python's parser), or None when `raw` has
    no run of digits long enough to hold an integer outside the range: the usual body costs
    one regex scan, not a second parse."""
    if _LONG_DIGITS.search(raw) is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def first_path(value: Any, offends: Callable[[Any], bool], path: str = "") -> str | None:
    """The dotted path (`a.b[2].c`) of the first value of a JSON tree, or key of one of its
    objects, that `offends`; None if there is none."""
    if isinstance(value, dict):
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            found = sub if offends(key) else first_path(item, offends, sub)
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = first_path(item, offends, f"{path}[{index}]")
            if found:
                return found
    elif offends(value):
        return path or "$"
    return None


def _out_of_range(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and not INTEGER_MIN <= value <= INTEGER_MAX


def find_out_of_range(value: Any) -> str | None:
    """The path of the first integer outside -2^63 … 2^64-1 (in `exact_numbers` output), or None."""
    return first_path(value, _out_of_range)


def number_out_of_range(field: str) -> APIError:
    return APIError(400, "number_out_of_range", f"{field}: integers must lie between -2^63 and 2^64-1 "
                    "(send a larger number as a decimal, e.g. 1e20, or as a string).", {"field": field})


def check_numbers(raw: bytes) -> None:
    """400 `number_out_of_range` if `raw` holds an integer no 64-bit integer holds."""
    field = find_out_of_range(exact_numbers(raw))
    if field is not None:
        raise number_out_of_range(field)


def parse_json_bytes(raw: bytes) -> Any:
    """A JSON body's bytes as data: 400 `empty_body` or `invalid_json` (with the position)."""
    if not raw.strip():
        raise APIError(400, "empty_body", "The request body is empty; send a JSON object.")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise APIError(400, "invalid_json", f"The body is not valid UTF-8 JSON: {exc.msg}",
                       {"position": exc.pos}) from None


async def body_bytes() -> bytes:
    """The request body as bytes (Quart's `get_data` is typed to return text or bytes)."""
    data = await request.get_data(as_text=False)
    return data if isinstance(data, bytes) else data.encode()


async def read_json(*, allow_text_plain: bool = False) -> Any:
    """The request body as JSON. 415 for another content type, 400 for empty or malformed."""
    mimetype = request.mimetype
    if not (is_json_mimetype(mimetype) or (allow_text_plain and mimetype == "text/plain")):
        raise APIError(415, "unsupported_media_type", "Send a JSON body with Content-Type: application/json.")
    raw = await body_bytes()
    data = parse_json_bytes(raw)
    check_numbers(raw)
    nul = find_nul(data)
    if nul is not None:
        raise APIError(400, "invalid_string", "Strings must not contain the NUL character (\\u0000).",
                         {"field": nul})
    return data


async def read_json_object(*, allow_text_plain: bool = False) -> dict[str, Any]:
    data = await read_json(allow_text_plain=allow_text_plain)
    if not isinstance(data, dict):
        raise APIError(400, "body_not_object", f"The body must be a JSON object, not {json_type(data)}.")
    return data


def json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


def _holds_nul(value: Any) -> bool:
    return isinstance(value, str) and "\x00" in value


def find_nul(value: Any) -> str | None:
    """The dotted path of the first string (or key) holding U+0000, or None. Postgres jsonb
    cannot store it, so it is refused at the door rather than failing at commit."""
    return first_path(value, _holds_nul)


def validation_details(error: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    details = []
    for item in error.errors(include_url=False):
        field = ".".join(str(part) for part in item["loc"])
        details.append({"field": f"{prefix}{field}" if field else prefix.rstrip(".") or "$",
                        "message": item["msg"]})
    return details


def parse_model(model: type[Model], data: dict[str, Any], *, prefix: str = "") -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = validation_details(exc, prefix)
        fields = ", ".join(d["field"] for d in details)
        raise APIError(422, "validation_failed", f"Invalid field(s): {fields}", details) from None


def json_body(model: type[Model], *, optional: bool = False) -> Callable:
    """Parse the body into `model` (passed as `body=`) and describe it in the OpenAPI spec.
    `optional`: an empty body is the model's defaults."""

    def decorator(func: Callable) -> Callable:
        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            empty = optional and not (await body_bytes()).strip()
            body = parse_model(model, {} if empty else await read_json_object())
            return await func(*args, body=body, **kwargs)

        return document_request(model)(wrapper)

    return decorator


def decoded_cursor(cursor: str | None, decode: Callable[[str], Any]) -> Any:
    """A `cursor` query parameter decoded, None without one; 400 for one this API did not issue."""
    if cursor is None:
        return None
    try:
        return decode(cursor)
    except ValueError:
        raise APIError(400, "invalid_cursor", "The cursor is not one this API issued.") from None


def reject_nulls(changes: dict[str, Any], fields: tuple[str, ...]) -> None:
    """A partial update (PUT) may leave these fields out, not set them to null: 422 if it does."""
    for name in fields:
        if name in changes and changes[name] is None:
            raise APIError(422, "validation_failed", f"{name} cannot be null.",
                           [{"field": name, "message": "cannot be null"}])




def parse_query(model: type[BaseModel]) -> Any:
    args = request.args
    repeated = [k for k in args if len(args.getlist(k)) > 1]
    if repeated:
        raise APIError(400, "invalid_query", f"Give each query parameter once: {', '.join(repeated)}.")
    try:
        return model.model_validate(args.to_dict())
    except ValidationError as exc:
        raise APIError(400, "invalid_query", "The query string is not valid.", validation_details(exc)) from None


class PageQuery(BaseModel):
    """`?limit=&cursor=` of a keyset-paginated list: pass a page's `next_cursor` back as `cursor`."""

    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = None


def parse_created_page(model: type[PageQuery] = PageQuery) -> tuple[Any, CreatedPlace | None]:
    """The query of a list in creation order, and the place its cursor names."""
    query = parse_query(model)
    return query, decoded_cursor(query.cursor, decode_created_cursor)
