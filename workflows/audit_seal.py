"""AuditSealWorkflow, started every HEADWATER_SEAL_INTERVAL_SECONDS by the `audit-seal` schedule:
seal what every workspace committed since its last seal (off the ingest path)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.activity_stubs import seal_audit_logs
    from workflows.params import AuditSealInput, AuditSealResult

SCHEDULE_ID = "audit-seal"


@workflow.defn
class AuditSealWorkflow:
    @workflow.run
    async def run(self, params: AuditSealInput) -> AuditSealResult:
        return await workflow.execute_activity(
            seal_audit_logs, params, start_to_close_timeout=timedelta(minutes=10),
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=5))
