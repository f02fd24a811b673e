"""Keyset pagination: opaque cursors over an identity column, and cutting a page."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import TypeVar

Row = TypeVar("Row")


def encode_seq_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"v{seq}".encode()).decode().rstrip("=")


def decode_seq_cursor(cursor: str) -> int:
    """Raises ValueError for anything that is not a cursor we issued."""
    value = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()).decode()
    if not value.startswith("v") or not value[1:].isdigit():
        raise ValueError("not a cursor")
    return int(value[1:])


def cut_page(rows: Sequence[Row], limit: int, cursor_of: Callable[[Row], str]) -> tuple[list[Row], str | None]:
    """`rows` were read with LIMIT limit + 1: the page, and the cursor after it (None at the end)."""
    return list(rows[:limit]), cursor_of(rows[limit - 1]) if len(rows) > limit else None
