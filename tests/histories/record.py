"""Records the histories that tests/test_workflows.py replays: every workflow run once (or
more) on Temporal's time-skipping test server with its activities replaced by doubles.

    .venv/bin/python -m tests.histories.record [NAME ...]   (only the histories whose names start so)

Record again only on purpose: a history recorded from the old code is what proves that a
change to a workflow still replays what is running in production. Add a file when a workflow
gains a path worth keeping; a change that must break old histories needs workflow versioning
(`workflow.patched`), not a new recording.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from devstack.temporal import binary
from worker import WORKFLOWS
from workflows.audit_check import AuditCheckWorkflow
from workflows.audit_seal import AuditSealWorkflow
from workflows.forwarding import ForwardingWorkflow
from workflows.params import (
    AuditCheckInput,
    AuditCheckResult,
    AuditSealInput,
    AuditSealResult,
    BatchState,
    ClaimState,
    ClaimStreamInput,
    ClaimStreamResult,
    ExpireStreamInput,
    ExpireStreamResult,
    ForwardBatchInput,
    ForwardBatchResult,
    ForwardingInput,
    RedriveInput,
    RedriveResult,
    ReplayBatchResult,
    ReplayInput,
    RetentionInput,
    RetentionResult,
    StreamCleanupInput,
    StreamCleanupResult,
    StreamExpiryInput,
)
from workflows.redrive import RedriveWorkflow
from workflows.replay import ReplayWorkflow
from workflows.retention import RetentionWorkflow
from workflows.stream_claim import StreamClaimWorkflow
from workflows.stream_cleanup import StreamCleanupWorkflow
from workflows.stream_expiry import StreamExpiryWorkflow

HERE = Path(__file__).parent
forward_answers: list[ForwardBatchResult] = []
replay_answers: list[ReplayBatchResult] = []


@activity.defn(name="forward_batch")
async def forward_batch(params: ForwardBatchInput) -> ForwardBatchResult:
    return forward_answers.pop(0)


@activity.defn(name="replay_batch")
async def replay_batch(params: ReplayInput) -> ReplayBatchResult:
    return replay_answers.pop(0)


@activity.defn(name="redrive_dead_letters")
async def redrive_dead_letters(params: RedriveInput) -> RedriveResult:
    return RedriveResult(redriven=3)


@activity.defn(name="claim_stream")
async def claim_stream(params: ClaimStreamInput) -> ClaimStreamResult:
    return ClaimStreamResult(outcome=ClaimState.CLAIMED, event_count=7, claimed_by=params.workspace_id)


@activity.defn(name="expire_stream")
async def expire_stream(params: ExpireStreamInput) -> ExpireStreamResult:
    return ExpireStreamResult(events_deleted=4)


@activity.defn(name="sweep_expired_streams")
async def sweep_expired_streams(params: StreamCleanupInput) -> StreamCleanupResult:
    return StreamCleanupResult(streams_expired=2, counters_pruned=5, idempotency_keys_pruned=1)


@activity.defn(name="seal_audit_logs")
async def seal_audit_logs(params: AuditSealInput) -> AuditSealResult:
    return AuditSealResult(workspaces=2, leaves=300)


@activity.defn(name="check_audit_logs")
async def check_audit_logs(params: AuditCheckInput) -> AuditCheckResult:
    return AuditCheckResult(checked=1000, mismatches=1)


@activity.defn(name="apply_retention")
async def apply_retention(params: RetentionInput) -> RetentionResult:
    return RetentionResult(workspaces=1, deleted=5000)


ONLY = tuple(sys.argv[1:])


async def record(env: WorkflowEnvironment, name: str, run, params) -> None:
    if ONLY and not name.startswith(ONLY):
        return
    handle = await env.client.start_workflow(run, params, id=f"{name}-{uuid.uuid4()}", task_queue="record")
    await handle.result()
    history = await handle.fetch_history()
    (HERE / f"{name}.json").write_text(history.to_json())
    print("recorded", name)


async def main() -> None:
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=binary("temporal-test-server"))
    try:
        async with Worker(env.client, task_queue="record", workflows=WORKFLOWS,
                          activities=[forward_batch, replay_batch, redrive_dead_letters, claim_stream, expire_stream,
                                      sweep_expired_streams, seal_audit_logs, check_audit_logs,
                                      apply_retention]):
            ok = ForwardBatchResult(state=BatchState.OK, delivered=10, cursor="5:evt_a")
            forward_answers[:] = [ForwardBatchResult(state=BatchState.OK, delivered=1000, more=True), ok,
                                  ForwardBatchResult(state=BatchState.HELD, hold_seconds=30, last_error="HTTP 503",
                                                     head_attempts=1, lag_seconds=4.0),
                                  ok, ForwardBatchResult(state=BatchState.OK, news=True),
                                  ForwardBatchResult(state=BatchState.GONE)]
            await record(env, "ForwardingWorkflow--idle-hold-gone", ForwardingWorkflow.run,
                         ForwardingInput(rule_id="r1", workspace_id="w1", idle_seconds=5))
            forward_answers[:] = [ForwardBatchResult(state=BatchState.OK, more=True)] * 3 + [
                ForwardBatchResult(state=BatchState.DISABLED)]
            await record(env, "ForwardingWorkflow--continue-as-new", ForwardingWorkflow.run,
                         ForwardingInput(rule_id="r2", workspace_id="w1", batches_per_run=2))
            replay_answers[:] = [ReplayBatchResult(state=BatchState.OK, after_xid=5, after_id="evt_a", replayed=1000),
                                 ReplayBatchResult(state=BatchState.HELD, hold_seconds=10, after_xid=5,
                                                   after_id="evt_a", replayed=1000),
                                 ReplayBatchResult(state=BatchState.DONE, after_xid=5, after_id="evt_a",
                                                   replayed=1000)]
            await record(env, "ReplayWorkflow--pages-hold-done", ReplayWorkflow.run,
                         ReplayInput(rule_id="r1", since="2026-12-01T00:00:00+00:00", upper_xid=9, upper_id="evt_z"))
            await record(env, "RedriveWorkflow--rule-not-running", RedriveWorkflow.run,
                         RedriveInput(rule_id="r3", event_ids=["evt_b"]))
            token = str(uuid.uuid4())
            await record(env, "StreamClaimWorkflow--claimed", StreamClaimWorkflow.run,
                         ClaimStreamInput(token=token, workspace_id=str(uuid.uuid4())))
            await record(env, "StreamExpiryWorkflow--expired", StreamExpiryWorkflow.run,
                         StreamExpiryInput(token=str(uuid.uuid4()), expires_at="2026-12-10T00:00:00+00:00"))
            await record(env, "StreamCleanupWorkflow--one-round", StreamCleanupWorkflow.run, StreamCleanupInput())
            await record(env, "AuditSealWorkflow--sealed", AuditSealWorkflow.run, AuditSealInput())
            await record(env, "AuditCheckWorkflow--found-one", AuditCheckWorkflow.run, AuditCheckInput())
            await record(env, "RetentionWorkflow--deleted", RetentionWorkflow.run, RetentionInput())
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
