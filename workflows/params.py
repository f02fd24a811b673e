"""Inputs and outputs of workflows and activities: one dataclass in, one out.

Standard library only, so workflows can import it inside the sandbox. New fields get
defaults, so histories recorded before a change still decode.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ClaimState(StrEnum):
    CLAIMED = "claimed"
    ALREADY_CLAIMED = "already_claimed"
    NOT_FOUND = "not_found"
    EXPIRED = "expired"


class ExpiryOutcome(StrEnum):
    EXPIRED = "expired"
    CLAIMED = "claimed"


class BatchState(StrEnum):
    """How a forwarding batch (or a replay page) ended."""

    OK = "ok"
    HELD = "held"  # the destination refused the whole batch, or the rule cannot deliver now
    DISABLED = "disabled"  # the rule was disabled: its workflow ends
    GONE = "gone"  # the rule was deleted: its workflow ends
    DONE = "done"  # a replay found nothing more


class RuleState(StrEnum):
    """What a forwarding workflow is doing, as its `status` query says."""

    STARTING = "starting"
    DELIVERING = "delivering"
    WAITING = "waiting"
    HELD = "held"
    STOPPED = "stopped"


@dataclass
class StreamExpiryInput:
    token: str
    expires_at: str  # ISO 8601


@dataclass
class StreamExpiryResult:
    outcome: ExpiryOutcome
    events_deleted: int = 0


@dataclass
class ClaimStreamInput:
    token: str
    workspace_id: str


@dataclass
class ClaimStreamResult:
    outcome: ClaimState
    event_count: int = 0
    claimed_by: str | None = None


@dataclass
class ExpireStreamInput:
    token: str


@dataclass
class ExpireStreamResult:
    events_deleted: int = 0


@dataclass
class StreamCleanupInput:
    batch_size: int = 1000


@dataclass
class StreamCleanupResult:
    streams_expired: int = 0
    counters_pruned: int = 0
    idempotency_keys_pruned: int = 0


@dataclass
class AuditSealInput:
    max_workspaces: int = 10_000  # per run; the rest wait for the next


@dataclass
class AuditSealResult:
    workspaces: int = 0
    leaves: int = 0


@dataclass
class AuditCheckInput:
    max_leaves: int = 200_000  # re-hashed per workspace and run


@dataclass
class AuditCheckResult:
    checked: int = 0
    mismatches: int = 0


@dataclass
class RetentionInput:
    max_batches: int = 2_000  # per workspace and run (of 5,000 events each)


@dataclass
class RetentionResult:
    workspaces: int = 0
    deleted: int = 0


@dataclass
class ForwardingInput:
    rule_id: str
    workspace_id: str
    batch_size: int = 1000
    idle_seconds: float = 5.0
    batches_per_run: int = 500  # then continue-as-new (sooner if Temporal suggests it)


@dataclass
class ForwardBatchInput:
    rule_id: str
    max_events: int = 1000
    linger_seconds: float = 0.0  # wait this long before reading, so a trickle arrives as one batch


@dataclass
class ForwardBatchResult:
    state: BatchState
    delivered: int = 0
    dead_lettered: int = 0
    retrying: int = 0
    more: bool = False  # a full batch was read: go again at once
    news: bool = False  # not full, but the workspace committed since it read: go again soon
    hold_seconds: float = 0.0
    cursor: str = ""
    last_error: str | None = None
    lag_seconds: float = 0.0
    head_attempts: int = 0


@dataclass
class ForwardingStatus:
    """What the `status` query answers (for operators in the Temporal UI)."""
    rule_id: str
    state: RuleState = RuleState.STARTING
    cursor: str = ""
    lag_seconds: float = 0.0
    batch_in_flight: bool = False
    last_error: str | None = None
    attempts: int = 0  # of the batch the destination keeps refusing
    delivered: int = 0  # in this run (since the last continue-as-new)
    batches: int = 0


@dataclass
class ReplayInput:
    rule_id: str
    since: str  # ISO 8601: events received at or after
    upper_xid: int  # the rule's cursor when the replay was asked for: live delivery covers the rest
    upper_id: str
    after_xid: int = 0
    after_id: str = ""
    replayed: int = 0


@dataclass
class ReplayBatchResult:
    state: BatchState
    after_xid: int = 0
    after_id: str = ""
    replayed: int = 0
    hold_seconds: float = 0.0


@dataclass
class RedriveInput:
    rule_id: str
    event_ids: list[str] | None = None  # None: every dead letter of the rule that matches the filter
    # The filter ("redrive all matching"): the last status code, text in the error or response,
    # and a range of the last attempt (ISO 8601). None matches anything.
    status: int | None = None
    error: str | None = None
    since: str | None = None
    until: str | None = None


@dataclass
class RedriveResult:
    redriven: int = 0
