"""What one pass over a rule's events produced, and how each event's outcome is settled:
done (delivered or dropped), retried later (with backoff), or dead-lettered."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from forwarding.delivery import Answer, Delivery, Outcome
from forwarding.reader import Row

MAX_RETRY_AFTER_SECONDS = 3600.0
DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_MAX_RETRY_AGE_SECONDS = 24 * 3600


@dataclass
class EventOutcome:
    outcome: Outcome
    answer: Answer | None = None
    error: str | None = None


@dataclass
class Batch:
    """What one pass produced (per event, and the requests sent), to be written in one transaction."""

    outcomes: dict[str, EventOutcome] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)


@dataclass
class Settlement:
    """A pass's outcomes as the recorder writes them."""

    delivered: int = 0
    dropped: int = 0  # by the transformation
    dead: int = 0
    last_error: str | None = None
    done_ids: list[str] = field(default_factory=list)  # leave the retries
    retry_rows: list[dict[str, Any]] = field(default_factory=list)
    dead_rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class RetryLimits:
    """A dead letter is an event tried at least `max_attempts` times and for at least
    `max_age_seconds` (or refused for good)."""

    max_attempts: int
    max_age_seconds: float

    @classmethod
    def of(cls, config: dict[str, Any]) -> RetryLimits:
        return cls(int(config.get("max_attempts", DEFAULT_MAX_ATTEMPTS)),
                   float(config.get("max_retry_age_seconds", DEFAULT_MAX_RETRY_AGE_SECONDS)))

    def exhausted(self, attempts: int, age_seconds: float) -> bool:
        return attempts >= self.max_attempts and age_seconds >= self.max_age_seconds


def backoff(attempts: int, retry_after: float | None, base: float, cap: float) -> float:
    """Exponential with jitter (half to all of base·2^(n-1), at most `cap`), never sooner than
    the destination's Retry-After."""
    delay = min(cap, base * 2 ** max(0, attempts - 1)) * random.uniform(0.5, 1.0)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS))
    return delay


def settle(rows: list[Row], batch: Batch, now: datetime, limits: RetryLimits,
           hold_seconds: Callable[[int, float | None], float]) -> Settlement:
    """Each row's outcome: done, a retry at its backoff, or a dead letter."""
    settled = Settlement()
    for row in rows:
        outcome = batch.outcomes[row.id]
        attempts = row.attempts + 1
        first = row.first_attempt_at or now
        if outcome.outcome in (Outcome.DELIVERED, Outcome.DROPPED):
            settled.delivered += outcome.outcome == Outcome.DELIVERED
            settled.dropped += outcome.outcome == Outcome.DROPPED
            settled.done_ids.append(row.id)
            continue
        settled.last_error = outcome.error or settled.last_error
        answer = outcome.answer
        status = answer.status if answer else None
        if outcome.outcome == Outcome.PERMANENT or limits.exhausted(attempts, (now - row.received_at).total_seconds()):
            settled.dead += 1
            settled.done_ids.append(row.id)
            settled.dead_rows.append({"event_id": row.id, "attempts": attempts, "last_status": status,
                                      "response_excerpt": answer.excerpt if answer else None,
                                      "error": outcome.error, "first_attempt_at": first})
        else:
            wait = hold_seconds(attempts, answer.retry_after if answer else None)
            settled.retry_rows.append({"event_id": row.id, "attempts": attempts, "first_attempt_at": first,
                                       "next_attempt_at": now + timedelta(seconds=wait), "last_status": status,
                                       "last_error": outcome.error})
    return settled


def error_text(answer: Answer) -> str | None:
    return None if answer.outcome == Outcome.DELIVERED else answer.error
