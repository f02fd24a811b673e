"""The activities the workflows call, as stubs: a name and its types, no body and no I/O
import, so that importing a workflow loads nothing but Temporal and its parameters. The
worker registers the real activities (activities/) under the same names; tests/test_workflows.py
checks that every stub has a real activity of the same name and types."""

from __future__ import annotations

from typing import NoReturn

from temporalio import activity

from workflows.params import (
    AuditCheckInput,
    AuditCheckResult,
    AuditSealInput,
    AuditSealResult,
    ClaimStreamInput,
    ClaimStreamResult,
    ExpireStreamInput,
    ExpireStreamResult,
    ForwardBatchInput,
    ForwardBatchResult,
    RedriveInput,
    RedriveResult,
    ReplayBatchResult,
    ReplayInput,
    RetentionInput,
    RetentionResult,
    StreamCleanupInput,
    StreamCleanupResult,
)


def _stub(name: str) -> NoReturn:
    raise NotImplementedError(f"{name} is a stub: the worker runs the real activity")


@activity.defn(name="forward_batch")
async def forward_batch(params: ForwardBatchInput) -> ForwardBatchResult:
    """One batch of a rule: read after its cursor, transform, deliver, record, advance."""
    _stub("forward_batch")


@activity.defn(name="replay_batch")
async def replay_batch(params: ReplayInput) -> ReplayBatchResult:
    """One page of a backfill."""
    _stub("replay_batch")


@activity.defn(name="redrive_dead_letters")
async def redrive_dead_letters(params: RedriveInput) -> RedriveResult:
    """Move a rule's dead letters back to be retried."""
    _stub("redrive_dead_letters")


@activity.defn(name="claim_stream")
async def claim_stream(params: ClaimStreamInput) -> ClaimStreamResult:
    """Move a stream's events into a workspace and lock the stream, in one transaction."""
    _stub("claim_stream")


@activity.defn(name="expire_stream")
async def expire_stream(params: ExpireStreamInput) -> ExpireStreamResult:
    """Delete an unclaimed stream's events at its expiry."""
    _stub("expire_stream")


@activity.defn(name="sweep_expired_streams")
async def sweep_expired_streams(params: StreamCleanupInput) -> StreamCleanupResult:
    """Expire streams whose timers never ran; prune old counters and idempotency keys."""
    _stub("sweep_expired_streams")


@activity.defn(name="seal_audit_logs")
async def seal_audit_logs(params: AuditSealInput) -> AuditSealResult:
    """Seal every workspace's events committed since its last seal, and sign the new heads."""
    _stub("seal_audit_logs")


@activity.defn(name="check_audit_logs")
async def check_audit_logs(params: AuditCheckInput) -> AuditCheckResult:
    """Re-hash sealed events against their leaves, from where the last check stopped."""
    _stub("check_audit_logs")


@activity.defn(name="apply_retention")
async def apply_retention(params: RetentionInput) -> RetentionResult:
    """Delete events older than their workspace's retention period (sealed ones only)."""
    _stub("apply_retention")
