"""RetentionWorkflow, started hourly by the `event-retention` schedule: delete the events older
than their workspace's retention period, in bounded batches (audit/retention.py)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.activity_stubs import apply_retention
    from workflows.params import RetentionInput, RetentionResult

SCHEDULE_ID = "event-retention"


@workflow.defn
class RetentionWorkflow:
    @workflow.run
    async def run(self, params: RetentionInput) -> RetentionResult:
        result = await workflow.execute_activity(
            apply_retention, params, start_to_close_timeout=timedelta(minutes=50),
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1), maximum_attempts=5))
        workflow.logger.info("retention deleted %d events in %d workspaces", result.deleted, result.workspaces)
        return result
