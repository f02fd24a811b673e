"""Temporal client code: what the API and the worker do to workflows from outside Temporal
(start, signal, stop). Workflows themselves are in workflows/ and import none of this."""
