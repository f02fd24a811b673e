"""The Temporal worker: runs Headwater's workflows and activities, and keeps the schedules
in place. `python worker.py` (make run starts it for you)."""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleSpec,
)
from temporalio.worker import Worker

from activities.streams import StreamActivities
from models.db import create_engine, session_factory
from settings import Settings, get_settings
from workflows.params import StreamCleanupInput
from workflows.stream_claim import StreamClaimWorkflow
from workflows.stream_cleanup import SCHEDULE_ID, StreamCleanupWorkflow
from workflows.stream_expiry import StreamExpiryWorkflow

log = logging.getLogger("headwater.worker")

WORKFLOWS = [StreamClaimWorkflow, StreamExpiryWorkflow, StreamCleanupWorkflow]


def build_worker(client: Client, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> Worker:
    streams = StreamActivities(sessions)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        activities=[streams.claim_stream, streams.expire_stream, streams.sweep_expired_streams],
    )


async def ensure_schedules(client: Client, settings: Settings) -> None:
    """Create the hourly stream cleanup schedule unless it exists (harmless to repeat)."""
    try:
        await client.create_schedule(
            SCHEDULE_ID,
            Schedule(
                action=ScheduleActionStartWorkflow(
                    StreamCleanupWorkflow.run, StreamCleanupInput(), id=SCHEDULE_ID, task_queue=settings.task_queue
                ),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]),
            ),
        )
        log.info("created schedule %s (hourly)", SCHEDULE_ID)
    except ScheduleAlreadyRunningError:
        pass


async def connect(settings: Settings, attempts: int = 60) -> Client:
    for attempt in range(1, attempts + 1):
        try:
            return await Client.connect(settings.temporal_target, namespace=settings.temporal_namespace)
        except Exception as exc:  # Temporal not up yet: wait and retry
            if attempt == attempts:
                raise
            log.warning("Temporal at %s not reachable (%s); retrying", settings.temporal_target, exc)
            await asyncio.sleep(min(attempt, 5))
    raise AssertionError("unreachable")


async def run(settings: Settings) -> None:
    client = await connect(settings)
    engine = create_engine(settings)
    await ensure_schedules(client, settings)
    worker = build_worker(client, session_factory(engine), settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker polling task queue %r on %s", settings.task_queue, settings.temporal_target)
    async with worker:
        await stop.wait()
    await engine.dispose()
    log.info("worker stopped")


def main() -> None:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
