"""Redaction throughput: events per second through `redact_audit_event` for typical audit
events, against a baseline that walks the same events' strings without looking for anything
(the floor any redactor pays), in the same run.

The events vary as a real stream's do: every id, address, name and request id differs from
one event to the next, while keys and enumerations (permission, tags) repeat. (Redacting one
event over and over would flatter any redactor that remembers what it has seen.)
"""

from __future__ import annotations

import platform
import random
import time
from typing import Any

from activities.redaction import redact_audit_event

FIRST = ["Jane", "Bob", "Ana", "Wei", "Omar", "Lena", "Raj", "Kofi", "Mia", "Ivan"]
LAST = ["Roe", "Smith", "Silva", "Chen", "Haddad", "Berg", "Patel", "Mensah", "Rossi", "Petrov"]


def typical(n: int, rng: random.Random) -> dict[str, Any]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return {
        "action": "document.shared",
        "category": "access",
        "actor": {"id": f"user_{rng.getrandbits(32):08x}", "type": "user", "name": f"{first} {last}",
                  "email": f"{first.lower()}.{last.lower()}{n}@example.com"},
        "tenant_id": f"tenant_{n % 50}",
        "target": {"id": f"doc_{n}", "type": "document", "name": f"Q{n % 4 + 1} planning {n % 7}"},
        "metadata": {
            "shared_with": f"{rng.choice(FIRST).lower()}{n}@example.org",
            "permission": rng.choice(["view", "edit", "comment"]),
            "ip": f"203.0.{rng.randrange(256)}.{rng.randrange(256)}",
            "user_agent": f"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_{n % 5}) AppleWebKit/605.1.{n % 20}",
            "request_id": f"req_{rng.getrandbits(96):024x}",
            "folder": f"/shared/planning/{2020 + n % 6}",
            "version": f"2.{n % 30}.{n % 9}",
            "size_bytes": rng.randrange(1, 10_000_000),
            "tags": ["planning", f"q{n % 4 + 1}", "finance"],
        },
    }


def walk_strings(value: Any) -> int:
    """Baseline: visit every string (keys too) and copy the containers, finding nothing."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(walk_strings(k) + walk_strings(v) for k, v in dict(value).items())
    if isinstance(value, list):
        return sum(walk_strings(v) for v in list(value))
    return 0


def rate(func, events: list[dict], seconds: float = 2.0) -> float:
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for event in events:
            func(event)
        count += len(events)
    return count / elapsed


def main() -> None:
    rng = random.Random(7)
    # More distinct events than one round of the timing loop needs: none is redacted twice
    # within a measurement of 2 s at the target rate.
    events = [typical(n, rng) for n in range(100_000)]
    spans = sum(redact_audit_event(event)[1] for event in events[:1000]) / 1000
    baseline = rate(walk_strings, events)
    redactor = rate(redact_audit_event, events)
    print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}")
    print(f"typical events: {spans:.1f} spans redacted each")
    print(f"baseline (walk strings, no detection): {baseline:,.0f} events/s")
    print(f"redact_audit_event:                    {redactor:,.0f} events/s (target ≥ 30,000)")
    print(f"ratio redactor / baseline:             {redactor / baseline:.3f}")


if __name__ == "__main__":
    main()
