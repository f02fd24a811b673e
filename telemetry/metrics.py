"""Prometheus metrics: the API process's (`API`, served at `GET /metrics` by web/metrics.py) and
the worker's (`WORKER`, served on `HEADWATER_WORKER_METRICS_PORT` by telemetry/worker_endpoint.py).

Labels are bounded: door (`v1`, `stream`), event type (the seven types, or `unknown`), outcome,
the cause of a 503 (an error code), the stream limit's name, a contract's mode, a rule's id and
an HTTP status class — never an event name, a workspace or a source. Hot paths add per request
or per batch, not per event: a batch tallies its types first.

Counting is off until a process turns it on (`enable()`: the API when it has a metrics token,
the worker when it has a metrics port), so a process that serves no metrics pays nothing.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Sequence
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from models.canonical import EVENT_TYPES

API = CollectorRegistry()
WORKER = CollectorRegistry()


class _Counting:
    on = False


def enable(on: bool = True) -> None:
    _Counting.on = on


def enabled() -> bool:
    return _Counting.on


# --- the API process -----------------------------------------------------------------------------

EVENTS = Counter("headwater_events", "Events that reached a door, by door, type and outcome "
                 "(accepted, deduplicated: a messageId seen before, rejected)",
                 ["door", "type", "outcome"], registry=API)
COMMIT_EVENTS = Histogram("headwater_group_commit_events", "Events in one group commit",
                          buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10_000), registry=API)
COMMIT_SECONDS = Histogram("headwater_group_commit_seconds", "Time of one group commit, connect included",
                           buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
                           registry=API)
COMMIT_FAILURES = Counter("headwater_group_commit_failures", "Group commits that failed (their requests got 503)",
                          registry=API)
UNAVAILABLE = Counter("headwater_unavailable_responses", "503 answers, by cause (the error code)", ["cause"],
                      registry=API)
STREAM_REFUSALS = Counter("headwater_stream_limit_refusals", "Anonymous stream requests refused by a limit",
                          ["limit"], registry=API)
CONTRACT_VIOLATIONS = Counter("headwater_contract_violations", "Events that violated their contract, by the "
                              "contract's mode (warn: stored, block: refused)", ["mode"], registry=API)
LIVE_CLIENTS = Gauge("headwater_live_clients", "Open live event streams (SSE)", registry=API)
LIVE_DROPPED = Counter("headwater_live_dropped_events", "Events sampled out of live streams", registry=API)

TYPES = frozenset(EVENT_TYPES)


def event_type(value: object) -> str:
    return value if isinstance(value, str) and value in TYPES else "unknown"


def count_events(door: str, outcome: str, types: Iterable[object]) -> None:
    """One increment per type present, however many events. A type is anything a client sent
    (a rejected event's `type` may be an object): named first, then counted."""
    if not _Counting.on:
        return
    for kind, n in Tally(map(event_type, types)).items():
        EVENTS.labels(door, kind, outcome).inc(n)


def count_commit(events: int, seconds: float, *, failed: bool) -> None:
    if not _Counting.on:
        return
    if failed:
        COMMIT_FAILURES.inc()
    else:
        COMMIT_SECONDS.observe(seconds)
        COMMIT_EVENTS.observe(events)


def count(counter: Counter, *labels: str, n: int = 1) -> None:
    """`n` more of a thing counted as a whole (a 503, a refusal, a violation, a live drop, the
    leaves of a seal)."""
    if _Counting.on and n:
        (counter.labels(*labels) if labels else counter).inc(n)


def live_clients(change: int) -> None:
    if _Counting.on:
        LIVE_CLIENTS.inc(change)


# --- the worker ----------------------------------------------------------------------------------

DELIVERED = Counter("headwater_forward_delivered_events", "Events a rule delivered (2xx)", ["rule_id"],
                    registry=WORKER)
RETRIED = Counter("headwater_forward_retried_events", "Events a rule set to be tried again", ["rule_id"],
                  registry=WORKER)
DEAD_LETTERED = Counter("headwater_forward_dead_lettered_events", "Events a rule gave up on (dead letters)",
                        ["rule_id"], registry=WORKER)
ATTEMPTS = Counter("headwater_forward_attempts", "Delivery requests, by the answer's status class "
                   "(2xx, 3xx, 4xx, 5xx; error: no answer; a warehouse load: ok or error)",
                   ["rule_id", "status_class"], registry=WORKER)
DELIVERY_SECONDS = Histogram("headwater_forward_delivery_latency_seconds",
                             "From an event's commit to its destination's 2xx", ["rule_id"],
                             buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400),
                             registry=WORKER)
PENDING = Gauge("headwater_forward_pending_events", "Events a rule has still to deliver (after its cursor, "
                "and its retries; counted up to 100,000)", ["rule_id"], registry=WORKER)
LAG = Gauge("headwater_forward_lag_seconds", "How long the oldest event a rule has still to deliver has waited "
            "(0: caught up)", ["rule_id"], registry=WORKER)
SANDBOX_RUNS = Counter("headwater_sandbox_runs", "Events run through a transformation", registry=WORKER)
SANDBOX_FAILURES = Counter("headwater_sandbox_failures", "Events whose transformation failed (threw, timed out, "
                           "ran out of memory)", registry=WORKER)
SANDBOX_RESTARTS = Counter("headwater_sandbox_restarts", "Sandbox processes started again after one died or "
                           "was stopped by the watchdog", registry=WORKER)
AUDIT_MISMATCHES = Counter("headwater_audit_mismatches", "Sealed audit-log leaves whose stored event was found "
                           "altered or missing (each counted once)", registry=WORKER)
SEALED = Counter("headwater_audit_sealed_events", "Events sealed into workspaces' audit logs", registry=WORKER)


def status_class(status: int | None, delivered: bool = False) -> str:
    """An HTTP answer's class; a warehouse load (no status) is `ok` or `error`."""
    if status is not None and 100 <= status < 600:
        return f"{status // 100}xx"
    return "ok" if delivered else "error"


def count_forwarding(rule_id: str, *, delivered_at: Sequence[datetime], retried: int, dead: int,
                     statuses: Iterable[tuple[int | None, bool]], now: datetime) -> None:
    """A batch's outcomes, once recorded: delivered events (and when each was committed),
    retried and dead-lettered ones, and every request's answer."""
    if not _Counting.on:
        return
    if delivered_at:
        DELIVERED.labels(rule_id).inc(len(delivered_at))
        histogram = DELIVERY_SECONDS.labels(rule_id)
        for committed in delivered_at:
            histogram.observe(max((now - committed).total_seconds(), 0.0))
    if retried:
        RETRIED.labels(rule_id).inc(retried)
    if dead:
        DEAD_LETTERED.labels(rule_id).inc(dead)
    for kind, n in Tally(status_class(status, delivered) for status, delivered in statuses).items():
        ATTEMPTS.labels(rule_id, kind).inc(n)


def rule_backlog(backlog: dict[str, tuple[int, float]]) -> None:
    """Every enabled rule's (pending, lag seconds) as the database says now; rules no longer
    enabled leave the gauges."""
    if not _Counting.on:
        return
    for gauge, index in ((PENDING, 0), (LAG, 1)):
        for labels in list(gauge._metrics):
            if labels[0] not in backlog:
                gauge.remove(*labels)
        for rule_id, figures in backlog.items():
            gauge.labels(rule_id).set(figures[index])


def count_sandbox(runs: int, failures: int, restarts: int) -> None:
    for counter, n in ((SANDBOX_RUNS, runs), (SANDBOX_FAILURES, failures), (SANDBOX_RESTARTS, restarts)):
        count(counter, n=n)

