"""Logging for every process: text by default, or `HEADWATER_LOG_FORMAT=json` for one JSON
object per line (time, level, logger, message, and request_id, workspace_id, rule_id where the
code knows them) that a log pipeline can index without parsing prose.

What is known about the work in hand travels in context variables: the API sets the request
id when a request starts and the workspace when its key is checked; forwarding sets the rule.
A log line anywhere below picks them up without being handed them.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
workspace_id: ContextVar[str | None] = ContextVar("workspace_id", default=None)
rule_id: ContextVar[str | None] = ContextVar("rule_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_CONTEXT = {"request_id": request_id, "workspace_id": workspace_id, "rule_id": rule_id}
# Fields a record may carry as `extra=` (the access log's), written as they are.
_EXTRA = ("method", "path", "status", "duration_ms")


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, variable in _CONTEXT.items():
            value = getattr(record, name, None) or variable.get()
            if value is not None:
                line[name] = str(value)
        for name in _EXTRA:
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure(level: str, log_format: str = "text") -> None:
    """The root logger for this process, in the chosen format, to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # hypercorn has its own handler on this logger; don't print its lines twice.
    logging.getLogger("hypercorn.error").propagate = False
