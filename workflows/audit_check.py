"""AuditCheckWorkflow, started by the `audit-check` schedule: re-hash stored events against
their sealed leaves, a slice of each workspace's log per run, all of it over time."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.activity_stubs import check_audit_logs
    from workflows.params import AuditCheckInput, AuditCheckResult

SCHEDULE_ID = "audit-check"


@workflow.defn
class AuditCheckWorkflow:
    @workflow.run
    async def run(self, params: AuditCheckInput) -> AuditCheckResult:
        result = await workflow.execute_activity(
            check_audit_logs, params, start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1), maximum_attempts=5))
        if result.mismatches:
            workflow.logger.warning("audit check found %d leaves whose events changed", result.mismatches)
        return result
