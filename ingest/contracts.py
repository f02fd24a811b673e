"""Contracts in the ingest path: each workspace's active contracts compiled and kept per process
(`ContractBook`), and the check of one event against its contract (`enforce`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ingest.cache import RefreshingCache
from models.canonical import CanonicalEvent
from models.contract_checks import CompiledContract
from models.contracts import ContractRepository, RecordedViolations
from telemetry import metrics

CONTRACT_CACHE_SECONDS = 1.0  # an update reaches every API process within this (+ a query)


class ContractBook:
    """Each workspace's active contracts, compiled, per process: reloaded at most every
    second (so updates land everywhere within 2 s), compiled once per contract version."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self._cache: RefreshingCache[dict[tuple[str, str | None], CompiledContract]] = RefreshingCache(
            CONTRACT_CACHE_SECONDS)
        self._compiled: dict[tuple[uuid.UUID, int], CompiledContract] = {}

    async def for_workspace(self, workspace_id: uuid.UUID) -> dict[tuple[str, str | None], CompiledContract]:
        async def load() -> dict[tuple[str, str | None], CompiledContract]:
            async with self.sessions() as session:
                contracts = await ContractRepository(session).active(workspace_id)
            book = {}
            for c in contracts:
                compiled = self._compiled.get((c.id, c.version))
                if compiled is None:
                    if len(self._compiled) > 10_000:
                        self._compiled.clear()
                    compiled = self._compiled[(c.id, c.version)] = CompiledContract(
                        str(c.id), c.version, c.event_type, c.event_name, c.json_schema, c.enforcement_mode,
                        c.undeclared_fields)
                book[(c.event_type, c.event_name)] = compiled
            return book

        return await self._cache.get(workspace_id, load)

    def forget(self, workspace_id: uuid.UUID) -> None:
        self._cache.forget(workspace_id)


_NOTHING: tuple = ()


def enforce(book: dict[tuple[str, str | None], CompiledContract], event: CanonicalEvent,
            recorded: RecordedViolations) -> tuple[bool, Sequence[tuple[Any, ...]]]:
    """Check one event against its contract (stripping in place if the contract says so) and
    add what it violates to `recorded`, for the group commit. Returns (blocked, violations).

    The contract: the one for the event's type and name, else the one for its type alone (the
    book holds only CONTRACT_EVENT_TYPES)."""
    if not book:
        return False, _NOTHING
    contract = book.get((event.type, event.name)) or book.get((event.type, None))
    if contract is None:
        return False, _NOTHING
    outcome = contract.check(event.body)
    if not outcome.violations:
        return False, _NOTHING
    blocked = outcome.blocked
    metrics.count(metrics.CONTRACT_VIOLATIONS, contract.mode)
    event_id, action = (None, "blocked") if blocked else (event.id, "warned")
    found = [(event_id, event.name, event.source_id, path, kind, message, action)  # VIOLATION_FIELDS
             for path, kind, message in outcome.violations]
    recorded.add((contract.id, event.workspace_id, event.type), found)
    return blocked, found


def public_violations(violations: Sequence[tuple[Any, ...]]) -> list[dict[str, str]]:
    """What a rejected event's answer says of its violations."""
    return [{"path": path, "kind": kind, "message": message} for _, _, _, path, kind, message, _ in violations]
