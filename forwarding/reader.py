"""Reading what a rule has to deliver: its due retries, and the matching events after its
cursor in commit order (up to the forwarding horizon, see models.forwarding)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from models.forwarding import ForwardingRule, matching_sql


@dataclass
class Row:
    """An event to deliver: from the events table, or from the rule's retries."""

    id: str
    commit_xid: int
    received_at: datetime
    source_id: uuid.UUID | None
    body_json: str
    attempts: int = 0  # before this one
    first_attempt_at: datetime | None = None


class EventReader:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def due_retries(self, rule: ForwardingRule, limit: int) -> list[Row]:
        rows = await self.session.execute(text("""
            SELECT e.id, e.commit_xid, e.received_at, e.source_id, e.body::text AS body_json,
                   r.attempts, r.first_attempt_at
            FROM forwarding_retries r JOIN events e ON e.workspace_id = :workspace_id AND e.id = r.event_id
            WHERE r.rule_id = :rule_id AND r.next_attempt_at <= now()
            ORDER BY r.next_attempt_at, r.event_id LIMIT :limit
        """), {"workspace_id": rule.workspace_id, "rule_id": rule.id, "limit": limit})
        return [Row(**row._mapping) for row in rows]

    async def after_cursor(self, rule: ForwardingRule, horizon: int, limit: int, *, since: datetime | None = None,
                           upper: tuple[int, str] | None = None, after: tuple[int, str] | None = None) -> list[Row]:
        """Matching events after `after` (the rule's cursor by default), committed before
        `horizon`; a replay page also bounds them by `since` (received at or after) and `upper`."""
        after = after or (rule.cursor_xid, rule.cursor_id)
        conditions = ["workspace_id = :workspace_id", "(commit_xid, id) > (:after_xid, :after_id)",
                      "commit_xid < :horizon"]
        values: dict[str, Any] = {"workspace_id": rule.workspace_id, "after_xid": after[0], "after_id": after[1],
                                  "horizon": horizon, "limit": limit, "event_types": rule.event_types or None,
                                  "event_names": rule.event_names or None}
        if since is not None:
            conditions.append("received_at >= :since")
            values["since"] = since
        if upper is not None:
            conditions.append("(commit_xid, id) <= (:upper_xid, :upper_id)")
            values |= {"upper_xid": upper[0], "upper_id": upper[1]}
        rows = await self.session.execute(text(f"""
            SELECT id, commit_xid, received_at, source_id, body::text AS body_json FROM events
            WHERE {" AND ".join(conditions)} {matching_sql(rule)}
            ORDER BY commit_xid, id LIMIT :limit
        """), values)
        return [Row(**row._mapping) for row in rows]
