"""Time as Headwater writes it everywhere: ISO 8601, UTC, millisecond precision, `Z`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BeforeValidator


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(timespec="milliseconds")[:-6] + "Z"  # drop "+00:00"


def parse_iso(value: str) -> datetime:
    """Parse an ISO 8601 timestamp; a naive one is taken as UTC. Raises ValueError."""
    parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))  # 3.11 reads Z as UTC
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _iso_or_value(value: Any) -> Any:
    return parse_iso(value) if isinstance(value, str) else value


# A datetime given as ISO 8601 (with `Z` or an offset), parsed the one way the API parses times.
IsoDateTime = Annotated[datetime, BeforeValidator(_iso_or_value)]
