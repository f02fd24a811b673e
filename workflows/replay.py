"""ReplayWorkflow (`replay-{rule_id}-{n}`): re-send a rule's older events as a backfill, page
by page, up to where the rule's cursor stood when the replay was asked for (live delivery
covers everything after)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.activity_stubs import replay_batch
    from workflows.params import BatchState, ReplayBatchResult, ReplayInput

PAGES_PER_RUN = 200


@workflow.defn
class ReplayWorkflow:
    @workflow.run
    async def run(self, params: ReplayInput) -> ReplayBatchResult:
        for _ in range(PAGES_PER_RUN):
            result = await workflow.execute_activity(
                replay_batch, params,
                start_to_close_timeout=timedelta(minutes=10), heartbeat_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)),
            )
            if result.state in (BatchState.DONE, BatchState.GONE):
                return result
            if result.state == BatchState.HELD:
                await workflow.sleep(timedelta(seconds=result.hold_seconds))
                continue
            params = replace(params, after_xid=result.after_xid, after_id=result.after_id, replayed=result.replayed)
        workflow.continue_as_new(params)
