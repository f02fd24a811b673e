"""Inputs and outputs of workflows and activities: one dataclass in, one out.

Standard library only, so workflows can import it inside the sandbox. New fields get
defaults, so histories recorded before a change still decode.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StreamExpiryInput:
    token: str
    expires_at: str  # ISO 8601


@dataclass
class StreamExpiryResult:
    outcome: str  # "expired" | "claimed"
    events_deleted: int = 0


@dataclass
class ClaimStreamInput:
    token: str
    workspace_id: str


@dataclass
class ClaimStreamResult:
    outcome: str  # "claimed" | "already_claimed" | "not_found" | "expired"
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
