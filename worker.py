"""The Temporal worker: runs Headwater's workflows and activities, and keeps the schedules
in place. `python worker.py` (make run starts it for you)."""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import timedelta
from pathlib import Path
from typing import Self

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

from activities.delivery import http_session
from activities.forwarding import ForwardingActivities, RuleWaker
from activities.sandbox import SandboxLimits
from activities.sandbox_process import SandboxProcess
from activities.streams import StreamActivities
from activities.transformations import Transformer
from models.db import create_engine, session_factory
from models.forwarding import ForwardingRepository
from settings import Settings, get_settings
from workflows.control import start_forwarding
from workflows.forwarding import ForwardingWorkflow
from workflows.params import StreamCleanupInput
from workflows.redrive import RedriveWorkflow
from workflows.replay import ReplayWorkflow
from workflows.stream_claim import StreamClaimWorkflow
from workflows.stream_cleanup import SCHEDULE_ID, StreamCleanupWorkflow
from workflows.stream_expiry import StreamExpiryWorkflow

log = logging.getLogger("headwater.worker")

WORKFLOWS = [StreamClaimWorkflow, StreamExpiryWorkflow, StreamCleanupWorkflow, ForwardingWorkflow, ReplayWorkflow,
             RedriveWorkflow]
RECONCILE_SECONDS = 60.0
HEARTBEAT_SECONDS = 5.0


class HeadwaterWorker:
    """The Temporal worker and what its activities need: the sandbox process for
    transformations, one HTTP client for deliveries, the waker for idle rules, and a loop that
    keeps a workflow running for every enabled forwarding rule (rules made while Temporal was
    down, workflows ended by hand). Use as `async with build_worker(...):`."""

    def __init__(self, client: Client, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self.client, self.sessions, self.settings = client, sessions, settings
        self.sandbox = SandboxProcess(SandboxLimits.from_settings(settings))
        self.http = http_session(settings)  # one per worker, its connection pool shared by every rule
        self.waker = RuleWaker(client, settings.postgres_dsn)
        streams = StreamActivities(sessions)
        forwarding = ForwardingActivities(sessions, Transformer(sessions, self.sandbox, settings), self.http, settings,
                                          self.waker)
        self.worker = Worker(
            client,
            task_queue=settings.task_queue,
            workflows=WORKFLOWS,
            activities=[streams.claim_stream, streams.expire_stream, streams.sweep_expired_streams,
                        forwarding.forward_batch, forwarding.replay_batch, forwarding.redrive_dead_letters],
            max_concurrent_activities=200,
        )
        self._tasks: list[asyncio.Task] = []

    async def __aenter__(self) -> Self:
        await self.worker.__aenter__()
        self._tasks = [asyncio.create_task(self._reconcile_forever(), name="forwarding-reconciler")]
        if self.settings.worker_heartbeat_file is not None:
            self._tasks.append(asyncio.create_task(self._beat_forever(self.settings.worker_heartbeat_file),
                                                   name="worker-heartbeat"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await self.worker.__aexit__(*exc)
        await self.waker.close()
        await self.http.close()
        await asyncio.to_thread(self.sandbox.close)

    async def reconcile(self) -> int:
        """Start the workflow of every enabled rule that has none running; returns how many rules."""
        async with self.sessions() as session:
            rules = await ForwardingRepository(session).enabled_rules()
        for rule_id, workspace_id in rules:
            await start_forwarding(self.client, self.settings, rule_id, workspace_id)
        return len(rules)

    async def _reconcile_forever(self) -> None:
        while True:
            try:
                await self.reconcile()
            except Exception as exc:  # noqa: BLE001 — Postgres or Temporal away: try again later
                log.warning("forwarding reconcile failed: %s", exc)
            await asyncio.sleep(RECONCILE_SECONDS)


    async def _beat_forever(self, path: Path) -> None:
        """Touch `path` while the worker runs: a healthcheck that reads the file's age sees a
        worker that stopped polling (or hung) as unhealthy."""
        while not self.worker.is_shutdown:
            if self.worker.is_running:
                await asyncio.to_thread(path.touch)
            await asyncio.sleep(HEARTBEAT_SECONDS if self.worker.is_running else 0.1)


def build_worker(client: Client, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> HeadwaterWorker:
    return HeadwaterWorker(client, sessions, settings)


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
