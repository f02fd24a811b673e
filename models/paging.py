"""Keyset pagination: opaque cursors over an identity column, and cutting a page."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import TypeVar

Row = TypeVar("Row")


def encode_seq_cursor(*seqs: int) -> str:
    """The cursor of a keyset place: one identity, or a pair (a row's, then an item's in it)."""
    return base64.urlsafe_b64encode(("v" + ".".join(map(str, seqs))).encode()).decode().rstrip("=")


def decode_seq_cursor(cursor: str) -> int:
    """Raises ValueError for anything that is not a cursor we issued."""
    return _decoded(cursor, 1)[0]


def decode_seq_pair_cursor(cursor: str) -> tuple[int, int]:
    """Raises ValueError for anything that is not a cursor we issued."""
    first, second = _decoded(cursor, 2)
    return first, second


def _decoded(cursor: str, count: int) -> list[int]:
    value = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()).decode()
    parts = value[1:].split(".")
    if not value.startswith("v") or len(parts) != count or not all(part.isdigit() for part in parts):
        raise ValueError("not a cursor")
    return [int(part) for part in parts]


def cut_page(rows: Sequence[Row], limit: int, cursor_of: Callable[[Row], str]) -> tuple[list[Row], str | None]:
    """`rows` were read with LIMIT limit + 1: the page, and the cursor after it (None at the end)."""
    return list(rows[:limit]), cursor_of(rows[limit - 1]) if len(rows) > limit else None
