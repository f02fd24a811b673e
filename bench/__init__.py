"""Benchmarks. Each prints its figures and their ratio to a baseline measured in the same run.
`make bench` runs them all; `python -m bench.<name>` runs one."""

from __future__ import annotations

import importlib

BENCHMARKS = [
    "bench.redaction", "bench.ingest", "bench.transform", "bench.observe", "bench.forward", "bench.console", "bench.scale",
    "bench.audit",
]  # ~12 min


def run_all() -> int:
    for name in BENCHMARKS:
        print(f"\n== {name} ==", flush=True)
        importlib.import_module(name).main()
    return 0
