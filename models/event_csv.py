"""Events as CSV (the export's `format=csv`): one row per event with the audit columns
flattened, RFC 4180 (quoted where needed, CRLF line ends), and safe to open in a spreadsheet.

A cell a spreadsheet would take for a formula — one starting with `=`, `+`, `-`, `@`, a tab
or a carriage return — is written with a `'` in front, as OWASP's CSV-injection advice says;
the rest of the cell is left as it was.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

import orjson

COLUMNS = ("id", "received_at", "timestamp", "type", "action", "event", "category", "actor_id", "actor_type",
           "actor_name", "tenant_id", "target_id", "target_type", "target_name", "user_id", "anonymous_id",
           "source_id", "metadata")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe(value: object) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def row(body: dict[str, Any]) -> list[str]:
    audit = body.get("type") == "audit"
    actor = body.get("actor") or {}
    target = body.get("target") or {}
    # metadata: an audit event's own; the properties or traits of the others
    details = body.get("metadata") if audit else body.get("properties", body.get("traits"))
    values = {
        "id": body.get("id"), "received_at": body.get("received_at"), "timestamp": body.get("timestamp"),
        "type": body.get("type"), "action": body.get("action") if audit else None,
        "event": None if audit else body.get("name"), "category": body.get("category"),
        "actor_id": actor.get("id"), "actor_type": actor.get("type"), "actor_name": actor.get("name"),
        "tenant_id": body.get("tenant_id"), "target_id": target.get("id"), "target_type": target.get("type"),
        "target_name": target.get("name"), "user_id": body.get("user_id"), "anonymous_id": body.get("anonymous_id"),
        "source_id": body.get("source_id"), "metadata": details or None,
    }
    return [safe(values[column]) for column in COLUMNS]


def csv_text(bodies: Iterable[dict[str, Any]], *, header: bool = False) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # QUOTE_MINIMAL: quotes, commas, line breaks
    if header:
        writer.writerow(COLUMNS)
    writer.writerows(row(body) for body in bodies)
    return out.getvalue().encode()
