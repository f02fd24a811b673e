"""Stream activities: claim (move events into a workspace), expire one stream, sweep the
streams whose timers never ran. Each opens its own transaction and is safe to retry."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from models.idempotency import IdempotencyRepository
from models.rate_limits import prune
from models.streams import StreamRepository
from workflows.params import (
    ClaimState,
    ClaimStreamInput,
    ClaimStreamResult,
    ExpireStreamInput,
    ExpireStreamResult,
    StreamCleanupInput,
    StreamCleanupResult,
)

# Rate-limit windows are a day at most; keep two so "how many fit" stays answerable.
COUNTER_RETENTION = timedelta(days=2)


async def claim_stream(sessions: async_sessionmaker[AsyncSession], params: ClaimStreamInput) -> ClaimStreamResult:
    async with sessions() as session, session.begin():
        outcome = await StreamRepository(session).claim(uuid.UUID(params.token), uuid.UUID(params.workspace_id))
    return ClaimStreamResult(
        outcome=ClaimState(outcome.outcome),
        event_count=outcome.event_count,
        claimed_by=str(outcome.claimed_by) if outcome.claimed_by else None,
    )


async def expire_stream(sessions: async_sessionmaker[AsyncSession], params: ExpireStreamInput) -> ExpireStreamResult:
    async with sessions() as session, session.begin():
        deleted = await StreamRepository(session).expire(uuid.UUID(params.token))
    return ExpireStreamResult(events_deleted=deleted)


async def sweep_expired_streams(
    sessions: async_sessionmaker[AsyncSession], params: StreamCleanupInput
) -> StreamCleanupResult:
    async with sessions() as session, session.begin():
        expired = await StreamRepository(session).sweep_expired(params.batch_size)
        pruned = await prune(session, COUNTER_RETENTION)
        # The hourly housekeeping also forgets management calls' idempotency keys past 24 h.
        keys = await IdempotencyRepository(session).purge_expired()
    return StreamCleanupResult(streams_expired=expired, counters_pruned=pruned, idempotency_keys_pruned=keys)


class StreamActivities:
    """The worker's stream activities; the session factory is injected in worker.py."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @activity.defn(name="claim_stream")
    async def claim_stream(self, params: ClaimStreamInput) -> ClaimStreamResult:
        return await claim_stream(self.sessions, params)

    @activity.defn(name="expire_stream")
    async def expire_stream(self, params: ExpireStreamInput) -> ExpireStreamResult:
        return await expire_stream(self.sessions, params)

    @activity.defn(name="sweep_expired_streams")
    async def sweep_expired_streams(self, params: StreamCleanupInput) -> StreamCleanupResult:
        return await sweep_expired_streams(self.sessions, params)
