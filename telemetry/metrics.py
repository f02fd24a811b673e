"""Prometheus metrics of the API process (`GET /metrics`, web/metrics.py).

Labels are bounded: door (`v1`, `stream`), event type (the seven types, or `unknown`), outcome,
the cause of a 503 (an error code), the stream limit's name — never an event name, a workspace
or a source. Hot paths add per request, not per event: a batch tallies its types first.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from models.canonical import EVENT_TYPES

REGISTRY = CollectorRegistry()

EVENTS = Counter("headwater_events", "Events that reached a door, by door, type and outcome "
                 "(accepted, deduplicated: a messageId seen before, rejected)",
                 ["door", "type", "outcome"], registry=REGISTRY)
COMMIT_EVENTS = Histogram("headwater_group_commit_events", "Events in one group commit",
                          buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10_000), registry=REGISTRY)
COMMIT_SECONDS = Histogram("headwater_group_commit_seconds", "Time of one group commit, connect included",
                           buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
                           registry=REGISTRY)
COMMIT_FAILURES = Counter("headwater_group_commit_failures", "Group commits that failed (their requests got 503)",
                          registry=REGISTRY)
UNAVAILABLE = Counter("headwater_unavailable_responses", "503 answers, by cause (the error code)", ["cause"],
                      registry=REGISTRY)
STREAM_REFUSALS = Counter("headwater_stream_limit_refusals", "Anonymous stream requests refused by a limit",
                          ["limit"], registry=REGISTRY)
LIVE_CLIENTS = Gauge("headwater_live_clients", "Open live event streams (SSE)", registry=REGISTRY)
LIVE_DROPPED = Counter("headwater_live_dropped_events", "Events sampled out of live streams", registry=REGISTRY)

TYPES = frozenset(EVENT_TYPES)


def event_type(value: object) -> str:
    return value if isinstance(value, str) and value in TYPES else "unknown"


def count_events(door: str, outcome: str, types: Iterable[object]) -> None:
    """One increment per type present, however many events. A type is anything a client sent
    (a rejected event's `type` may be an object): named first, then counted."""
    for kind, n in Tally(map(event_type, types)).items():
        EVENTS.labels(door, kind, outcome).inc(n)
