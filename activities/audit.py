"""The audit log's activities: a few lines each around the ledger (audit/log.py) and
retention (audit/retention.py)."""

from __future__ import annotations

from temporalio import activity

from activities.forwarding import heartbeating
from audit.log import AuditLedger
from audit.retention import Retention
from telemetry import metrics
from workflows.params import (
    AuditCheckInput,
    AuditCheckResult,
    AuditSealInput,
    AuditSealResult,
    RetentionInput,
    RetentionResult,
)


class AuditActivities:
    def __init__(self, ledger: AuditLedger, retention: Retention) -> None:
        self.ledger, self.retention = ledger, retention

    @activity.defn(name="seal_audit_logs")
    async def seal_audit_logs(self, params: AuditSealInput) -> AuditSealResult:
        async with heartbeating():
            workspaces, leaves = await self.ledger.seal_all(params.max_workspaces)
        metrics.count(metrics.SEALED, n=leaves)
        return AuditSealResult(workspaces=workspaces, leaves=leaves)

    @activity.defn(name="check_audit_logs")
    async def check_audit_logs(self, params: AuditCheckInput) -> AuditCheckResult:
        async with heartbeating():
            report = await self.ledger.check_all(params.max_leaves)
        return AuditCheckResult(checked=report.checked, mismatches=len(report.found))

    @activity.defn(name="apply_retention")
    async def apply_retention(self, params: RetentionInput) -> RetentionResult:
        async with heartbeating():
            workspaces, deleted = await self.retention.apply(params.max_batches)
        return RetentionResult(workspaces=workspaces, deleted=deleted)
