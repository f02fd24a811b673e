"""Deterministic Temporal workflows, one per file. No I/O library is imported here."""
