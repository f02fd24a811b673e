"""Redaction throughput: events per second through `redact_audit_event` for a typical audit
event, against a baseline that walks the same event's strings without looking for anything
(the floor any redactor pays), in the same run."""

from __future__ import annotations

import platform
import time
from typing import Any

from activities.redaction import redact_audit_event

TYPICAL = {
    "action": "document.shared",
    "category": "access",
    "actor": {"id": "user_8f3a", "type": "user", "name": "Jane Roe", "email": "jane.roe@example.com"},
    "tenant_id": "acme_corp",
    "target": {"id": "doc_1234", "type": "document", "name": "Q3 planning"},
    "metadata": {
        "shared_with": "bob@example.org",
        "permission": "edit",
        "ip": "203.0.113.9",
        "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15",
        "request_id": "req_b6374e75cd26cf6f72e5a2b5",
        "folder": "/shared/planning/2024",
        "version": "2.14.3",
        "size_bytes": 48213,
        "tags": ["planning", "q3", "finance"],
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


def rate(func, event: dict, seconds: float = 2.0) -> float:
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(500):
            func(event)
        count += 500
    return count / elapsed


def main() -> None:
    _, redacted = redact_audit_event(TYPICAL)
    baseline = rate(walk_strings, TYPICAL)
    redactor = rate(redact_audit_event, TYPICAL)
    print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}")
    print(f"typical event: {redacted} spans redacted")
    print(f"baseline (walk strings, no detection): {baseline:,.0f} events/s")
    print(f"redact_audit_event:                    {redactor:,.0f} events/s")
    print(f"ratio redactor / baseline:             {redactor / baseline:.3f}")


if __name__ == "__main__":
    main()
