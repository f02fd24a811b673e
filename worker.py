"""The Temporal worker: runs Headwater's workflows and activities, and keeps the schedules
in place. `python worker.py` (make run starts it for you)."""

from __future__ import annotations

import asyncio
import logging
import signal
import uuid
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from opentelemetry.trace import Tracer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleSpec,
)
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.runtime import Runtime
from temporalio.worker import Worker

from activities.audit import AuditActivities
from activities.forwarding import ForwardingActivities
from activities.sandbox import SandboxLimits
from activities.sandbox_process import SandboxProcess
from activities.streams import StreamActivities
from activities.transformations import Transformer
from audit.log import AuditLedger
from audit.retention import Retention
from devstack.processes import free_port
from forwarding.delivery import http_session
from forwarding.engine import ForwardingEngine
from forwarding.warehouse import WarehousePools
from models.db import create_engine, session_factory
from models.forwarding import ForwardingRepository
from models.pubsub import CommitListener
from orchestration.forwarding import start_forwarding, wake_forwarding
from settings import Settings, get_settings
from telemetry import logs, metrics, tracing, worker_endpoint
from workflows.audit_check import SCHEDULE_ID as AUDIT_CHECK
from workflows.audit_check import AuditCheckWorkflow
from workflows.audit_seal import SCHEDULE_ID as AUDIT_SEAL
from workflows.audit_seal import AuditSealWorkflow
from workflows.forwarding import ForwardingWorkflow
from workflows.params import AuditCheckInput, AuditSealInput, RetentionInput, StreamCleanupInput
from workflows.redrive import RedriveWorkflow
from workflows.replay import ReplayWorkflow
from workflows.retention import SCHEDULE_ID as RETENTION
from workflows.retention import RetentionWorkflow
from workflows.stream_claim import StreamClaimWorkflow
from workflows.stream_cleanup import SCHEDULE_ID, StreamCleanupWorkflow
from workflows.stream_expiry import StreamExpiryWorkflow

log = logging.getLogger("headwater.worker")

WORKFLOWS = [StreamClaimWorkflow, StreamExpiryWorkflow, StreamCleanupWorkflow, ForwardingWorkflow, ReplayWorkflow,
             RedriveWorkflow, AuditSealWorkflow, AuditCheckWorkflow, RetentionWorkflow]
RECONCILE_SECONDS = 60.0
BACKLOG_SECONDS = 10.0  # how often the rule backlog gauges are read from the database
HEARTBEAT_SECONDS = 5.0


class RuleWaker:
    """Tells rule workflows that wait for events that their workspace just committed some.

    A batch first `watch()`es its workspace (LISTEN on its pubsub topic, which every commit
    NOTIFYs) and notes the workspace's generation; once caught up it `settle()`s: if anything
    was committed since it read, it goes again at once, otherwise the rule is signalled `wake`
    at the workspace's next commit, once. The check and the registration happen without an
    await between them, so no commit falls between the two. Busy rules are never signalled.
    """

    def __init__(self, client: Client, dsn: str) -> None:
        self.client = client
        self._listener = CommitListener(dsn, self._heard, self._reconnected)
        self._idle: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)  # workspace → rules
        self._generation: dict[uuid.UUID, int] = defaultdict(int)  # workspace → commits heard
        self._tasks: set[asyncio.Task] = set()

    async def watch(self, workspace_id: uuid.UUID) -> int | None:
        """LISTEN for the workspace's commits (from now on); its current generation. Never
        raises: None means "cannot tell", and the rule's idle timer covers the rest."""
        try:
            await self._listener.listen(workspace_id)
        except Exception as exc:  # noqa: BLE001 — see the docstring
            log.warning("waker: cannot listen for workspace %s: %s", workspace_id, exc)
            return None
        return self._generation[workspace_id]

    def settle(self, workspace_id: uuid.UUID, rule_id: uuid.UUID, generation: int | None) -> bool:
        """True if the workspace committed since `generation` (read again now); otherwise
        the rule is woken at its next commit."""
        if generation is None:
            return False
        if self._generation[workspace_id] != generation:
            return True
        self._idle[workspace_id].add(rule_id)
        return False

    def _reconnected(self) -> None:
        for workspace_id in self._listener.workspaces:  # commits may have gone unheard
            self._generation[workspace_id] += 1

    def _heard(self, workspace_id: uuid.UUID, _payload: str) -> None:
        self._generation[workspace_id] += 1
        for rule_id in self._idle.pop(workspace_id, set()):
            task = asyncio.create_task(self._wake(rule_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _wake(self, rule_id: uuid.UUID) -> None:
        try:
            await wake_forwarding(self.client, rule_id)
        except Exception as exc:  # noqa: BLE001 — a rule that just ended; its timer covers the rest
            log.debug("waker: could not wake %s: %s", rule_id, exc)

    async def close(self) -> None:
        await self._listener.close()


class HeadwaterWorker:
    """The Temporal worker and what its activities need: the sandbox process for
    transformations, one HTTP client for deliveries, the waker for idle rules, and a loop that
    keeps a workflow running for every enabled forwarding rule (rules made while Temporal was
    down, workflows ended by hand). Use as `async with build_worker(...):`."""

    def __init__(self, client: Client, sessions: async_sessionmaker[AsyncSession], settings: Settings,
                 tracer: Tracer | None = None) -> None:
        self.client, self.sessions, self.settings = client, sessions, settings
        self.sandbox = SandboxProcess(SandboxLimits.from_settings(settings))
        self.http = http_session(settings)  # one per worker, its connection pool shared by every rule
        self.warehouses = WarehousePools()  # one asyncpg pool per postgres destination's DSN
        self.waker = RuleWaker(client, settings.postgres_dsn)
        streams = StreamActivities(sessions)
        audit = AuditActivities(AuditLedger(sessions), Retention(sessions))
        forwarding = ForwardingActivities(ForwardingEngine(sessions, Transformer(sessions, self.sandbox, settings),
                                                           self.http, settings, self.waker, tracer, self.warehouses))
        self.worker = Worker(
            client,
            task_queue=settings.task_queue,
            workflows=WORKFLOWS,
            activities=[streams.claim_stream, streams.expire_stream, streams.sweep_expired_streams,
                        forwarding.forward_batch, forwarding.replay_batch, forwarding.redrive_dead_letters,
                        audit.seal_audit_logs, audit.check_audit_logs, audit.apply_retention],
            max_concurrent_activities=200,
        )
        self._tasks: list[asyncio.Task] = []

    async def __aenter__(self) -> Self:
        await self.worker.__aenter__()
        self._tasks = [asyncio.create_task(self._reconcile_forever(), name="forwarding-reconciler")]
        if metrics.enabled():
            self._tasks.append(asyncio.create_task(self._observe_backlog_forever(), name="rule-backlog-metrics"))
        if self.settings.worker_heartbeat_file is not None:
            self._tasks.append(asyncio.create_task(self._beat_forever(self.settings.worker_heartbeat_file),
                                                   name="worker-heartbeat"))
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        for task in self._tasks:
            task.cancel()
        await self.worker.__aexit__(exc_type, exc, traceback)
        await self.waker.close()
        await self.http.close()
        await self.warehouses.close()
        await asyncio.to_thread(self.sandbox.close)

    async def reconcile(self) -> int:
        """Start the workflow of every enabled rule that has none running; returns how many rules."""
        async with self.sessions() as session:
            rules = await ForwardingRepository(session).enabled_rules()
        for rule_id, workspace_id in rules:
            await start_forwarding(self.client, self.settings, rule_id, workspace_id)
        return len(rules)

    async def observe_backlog(self) -> None:
        """Every enabled rule's pending events and lag, as the database says now, into the
        gauges. Every worker reports the same figures (Prometheus takes the max by rule): they
        describe the rule, not the worker that happened to run its last batch."""
        async with self.sessions() as session:
            repository = ForwardingRepository(session)
            stats = await repository.stats(await repository.enabled_rule_rows())
        metrics.rule_backlog({str(rule_id): (s.pending, s.lag_seconds) for rule_id, s in stats.items()})

    async def _observe_backlog_forever(self) -> None:
        while True:
            try:
                await self.observe_backlog()
            except Exception as exc:  # noqa: BLE001 — Postgres away: the gauges keep their last figures
                log.warning("reading the rules' backlog failed: %s", exc)
            await asyncio.sleep(BACKLOG_SECONDS)

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


def build_worker(client: Client, sessions: async_sessionmaker[AsyncSession], settings: Settings,
                 tracer: Tracer | None = None) -> HeadwaterWorker:
    return HeadwaterWorker(client, sessions, settings, tracer)


async def ensure_schedules(client: Client, settings: Settings) -> None:
    """Create the schedules unless they exist (harmless to repeat): the hourly stream cleanup,
    the audit log's sealing and its check, the hourly retention. A run still going when the next
    is due is not doubled (Temporal's default overlap policy, skip)."""
    schedules: list[tuple[str, Any, Any, timedelta]] = [  # (id, workflow, its input, how often)
        (SCHEDULE_ID, StreamCleanupWorkflow.run, StreamCleanupInput(), timedelta(hours=1)),
        (AUDIT_SEAL, AuditSealWorkflow.run, AuditSealInput(), timedelta(seconds=settings.seal_interval_seconds)),
        (AUDIT_CHECK, AuditCheckWorkflow.run, AuditCheckInput(settings.audit_check_leaves),
         timedelta(seconds=settings.audit_check_interval_seconds)),
        (RETENTION, RetentionWorkflow.run, RetentionInput(), timedelta(hours=1)),
    ]
    for schedule_id, workflow_run, params, every in schedules:
        action = ScheduleActionStartWorkflow(workflow_run, params, id=schedule_id, task_queue=settings.task_queue)
        try:
            await client.create_schedule(schedule_id, Schedule(
                action=action, spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)])))
            log.info("created schedule %s (every %s)", schedule_id, every)
        except ScheduleAlreadyRunningError:
            pass


async def connect(settings: Settings, attempts: int = 60, runtime: Runtime | None = None,
                  tracer: Tracer | None = None) -> Client:
    """A client for the worker; with a tracer, its workflows and activities run in spans
    (temporalio's OpenTelemetry interceptor), and so does what they call."""
    interceptors = [TracingInterceptor(tracer)] if tracer is not None else []
    for attempt in range(1, attempts + 1):
        try:
            return await Client.connect(settings.temporal_target, namespace=settings.temporal_namespace,
                                        runtime=runtime, interceptors=interceptors)
        except Exception as exc:  # Temporal not up yet: wait and retry
            if attempt == attempts:
                raise
            log.warning("Temporal at %s not reachable (%s); retrying", settings.temporal_target, exc)
            await asyncio.sleep(min(attempt, 5))
    raise AssertionError("unreachable")


async def run(settings: Settings) -> None:
    runtime = None
    if settings.worker_metrics_port is not None:
        runtime, temporal_metrics = worker_endpoint.temporal_runtime(f"127.0.0.1:{free_port()}")
        worker_endpoint.serve(settings.worker_metrics_host, settings.worker_metrics_port, temporal_metrics)
    traces = tracing.tracer_provider(settings, "headwater-worker")
    tracer = tracing.tracer_of(traces) if traces is not None else None
    client = await connect(settings, runtime=runtime, tracer=tracer)
    engine = create_engine(settings)
    await ensure_schedules(client, settings)
    worker = build_worker(client, session_factory(engine), settings, tracer)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker polling task queue %r on %s", settings.task_queue, settings.temporal_target)
    async with worker:
        await stop.wait()
    await engine.dispose()
    if traces is not None:
        traces.shutdown()
    log.info("worker stopped")


def main() -> None:
    settings = get_settings()
    logs.configure(settings.log_level, settings.log_format)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
