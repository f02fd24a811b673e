"""The forwarding activities: a few lines each around the engine (forwarding/), which the
worker builds and injects."""

from __future__ import annotations

import asyncio
import uuid

from temporalio import activity

from forwarding.engine import ForwardingEngine
from telemetry import logs
from workflows.params import (
    ForwardBatchInput,
    ForwardBatchResult,
    RedriveInput,
    RedriveResult,
    ReplayBatchResult,
    ReplayInput,
)

HEARTBEAT_SECONDS = 2.0


class ForwardingActivities:
    def __init__(self, engine: ForwardingEngine) -> None:
        self.engine = engine

    @activity.defn(name="forward_batch")
    async def forward_batch(self, params: ForwardBatchInput) -> ForwardBatchResult:
        logs.rule_id.set(params.rule_id)  # every log line of this batch names its rule
        async with heartbeating():
            if params.linger_seconds:
                await asyncio.sleep(params.linger_seconds)
            return await self.engine.forward_batch(uuid.UUID(params.rule_id), params.max_events)

    @activity.defn(name="replay_batch")
    async def replay_batch(self, params: ReplayInput) -> ReplayBatchResult:
        logs.rule_id.set(params.rule_id)
        async with heartbeating():
            return await self.engine.replay_batch(params)

    @activity.defn(name="redrive_dead_letters")
    async def redrive_dead_letters(self, params: RedriveInput) -> RedriveResult:
        logs.rule_id.set(params.rule_id)
        return await self.engine.redrive(params)


class heartbeating:
    """Heartbeats every 2 s while a batch runs, so a dead worker's batch is retried soon."""

    async def __aenter__(self) -> None:
        async def beat() -> None:
            while True:
                activity.heartbeat()
                await asyncio.sleep(HEARTBEAT_SECONDS)

        self._task = asyncio.create_task(beat()) if activity.in_activity() else None

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
