"""Keyset pagination: opaque cursors over an identity column or a creation order, and
cutting a page."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

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


# Lists of things a workspace makes (sources, destinations, rules, contracts,
# transformations, master keys) page in creation order, oldest first: (created_at, id).
CreatedPlace = tuple[datetime, uuid.UUID]


def encode_created_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"c{created_at.isoformat()}|{row_id}".encode()).decode().rstrip("=")


def decode_created_cursor(cursor: str) -> CreatedPlace:
    """Raises ValueError for anything that is not a cursor we issued."""
    value = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()).decode()
    created, separator, row_id = value[1:].partition("|")
    if not value.startswith("c") or not separator:
        raise ValueError("not a cursor")
    place = datetime.fromisoformat(created), uuid.UUID(row_id)
    if place[0].tzinfo is None:
        raise ValueError("not a cursor")
    return place


async def page_by_creation(session: AsyncSession, query: Select[Any], entity: Any, limit: int,
                           after: CreatedPlace | None) -> tuple[list[Any], str | None]:
    """One page of `query` (a select of `entity`, which has `created_at` and `id`) in creation
    order after `after`, and the cursor of the next page (None at the end)."""
    if after is not None:
        query = query.where(tuple_(entity.created_at, entity.id) > tuple_(*after))
    rows = list(await session.scalars(query.order_by(entity.created_at, entity.id).limit(limit + 1)))
    return cut_page(rows, limit, lambda row: encode_created_cursor(row.created_at, row.id))
