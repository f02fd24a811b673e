"""Headwater's Python SDK for anonymous audit streams.

    import headwater
    stream = headwater.stream()   # HEADWATER_URL, or http://127.0.0.1:8000
    stream.log(action="user.created", category="mutation",
               actor={"id": "u_1", "type": "user"}, tenant_id="acme")
    print(stream.token)     # claim it later with a master key
    stream.flush()

`log()` checks the event (a mistake raises ValueError at the call, so it can never take
other events down with it) and only queues: a background thread sends batches of up to 100
events, retries 429 and 5xx (honouring Retry-After) and network errors with backoff, and
never blocks the caller. Every event gets an idempotency key, so a retried batch is never
stored twice. `flush()` and `close()` drain the queue; `close()` also runs at interpreter exit.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import re
import threading
import time
import uuid
from collections import deque
from typing import Any, Self

import httpx

__all__ = ["Stream", "stream"]

log = logging.getLogger("headwater")

MAX_BATCH = 100
DEFAULT_URL = "http://127.0.0.1:8000"
# What the server accepts, checked before queueing (web/streams.py, models/canonical.py).
CATEGORIES = ("auth", "access", "mutation", "admin", "security", "system")
ACTION = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)+$")
_EVENT_INDEX = re.compile(r"^events\[(\d+)\]")


def stream(base_url: str | None = None, token: str | None = None, **options: Any) -> Stream:
    """A stream for `token`, or for a fresh UUIDv4 claim token, on `base_url` (by default
    HEADWATER_URL from the environment, else http://127.0.0.1:8000)."""
    return Stream(base_url or os.environ.get("HEADWATER_URL") or DEFAULT_URL, token or str(uuid.uuid4()), **options)


def check_event(event: dict[str, Any]) -> None:
    """Raises ValueError naming what the server would refuse in this event."""
    action = event.get("action")
    if not isinstance(action, str) or len(action) > 128 or not ACTION.match(action):
        raise ValueError(f"action must be dot-namespaced lowercase words, e.g. 'user.created'; got {action!r}")
    if event.get("category") not in CATEGORIES:
        raise ValueError(f"category must be one of {', '.join(CATEGORIES)}; got {event.get('category')!r}")
    actor = event.get("actor")
    if not isinstance(actor, dict) or not actor.get("id") or not actor.get("type"):
        raise ValueError(f"actor must be an object with an id and a type; got {actor!r}")
    if not isinstance(event.get("tenant_id"), str) or not event["tenant_id"]:
        raise ValueError(f"tenant_id must be a non-empty string; got {event.get('tenant_id')!r}")
    for name in ("target", "metadata"):
        if name in event and not isinstance(event[name], dict):
            raise ValueError(f"{name} must be an object; got {type(event[name]).__name__}")


class Stream:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        batch_size: int = MAX_BATCH,
        flush_interval: float = 0.5,
        max_queue: int = 10_000,
        timeout: float = 10.0,
        max_backoff: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.token = token
        self.base_url = base_url.rstrip("/")
        self.batch_size = max(1, min(batch_size, MAX_BATCH))
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.max_backoff = max_backoff
        self.dropped = 0  # events refused for good (queue full, or rejected by the server)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)
        self._queue: deque[dict[str, Any]] = deque()
        self._in_flight = 0
        self._cond = threading.Condition()
        self._closed = False
        self._flushers = 0
        self._thread = threading.Thread(target=self._run, name=f"headwater-stream-{token[:8]}", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # -- the caller's side ------------------------------------------------------------------
    def log(
        self,
        *,
        action: str,
        category: str,
        actor: dict[str, Any],
        tenant_id: str,
        target: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        event: dict[str, Any] = {"action": action, "category": category, "actor": actor, "tenant_id": tenant_id,
                                 "idempotency_key": idempotency_key or str(uuid.uuid4())}
        if target is not None:
            event["target"] = target
        if metadata is not None:
            event["metadata"] = metadata
        check_event(event)
        with self._cond:
            if self._closed:
                raise RuntimeError("this stream is closed")
            if len(self._queue) >= self.max_queue:
                self.dropped += 1
                log.warning("headwater: queue full (%d events); dropping %s", self.max_queue, action)
                return
            self._queue.append(event)
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued event has been sent (or refused). False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._flushers += 1
            self._cond.notify_all()
            try:
                while self._queue or self._in_flight:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining)
            finally:
                self._flushers -= 1
        return True

    def close(self, timeout: float | None = 30.0) -> None:
        with self._cond:
            if self._closed:
                return
        self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
        self._http.close()
        atexit.unregister(self.close)

    def info(self) -> dict[str, Any]:
        """The stream as the server sees it. Before its first event is stored the server has
        no stream yet: `{"claim_token", "status": "not_created", "event_count": 0}` — the
        same shape as the server's answer."""
        response = self._http.get(f"/api/v1/streams/{self.token}/info")
        if response.status_code == 404:
            return {"claim_token": self.token, "status": "not_created", "event_count": 0}
        response.raise_for_status()
        return response.json()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the background sender --------------------------------------------------------------
    def _next_batch(self) -> list[dict[str, Any]] | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if not self._queue:
                return None
            # Give a burst a moment to fill the batch, unless someone is waiting on a flush.
            deadline = time.monotonic() + self.flush_interval
            while len(self._queue) < self.batch_size and not self._closed and not self._flushers:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch = [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]
            self._in_flight = len(batch)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._send(batch)
            finally:
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()

    def _send(self, batch: list[dict[str, Any]]) -> None:
        attempt = 0
        while True:
            attempt += 1
            delay = min(self.max_backoff, 0.5 * 2 ** min(attempt, 10)) * (0.5 + random.random() / 2)
            try:
                response = self._http.post(f"/api/v1/streams/{self.token}/events", json={"events": batch})
            except httpx.HTTPError as exc:
                log.warning("headwater: send failed (%s); retrying in %.1fs", exc, delay)
            else:
                if response.status_code < 300:
                    return
                if response.status_code == 429 or response.status_code >= 500:
                    delay = _retry_after(response) or delay
                    log.warning("headwater: %s from server; retrying in %.1fs", response.status_code, delay)
                else:
                    refused = _refused_indexes(response, len(batch))
                    self.dropped += len(refused)
                    log.error("headwater: %d event(s) refused: %s", len(refused), response.text[:500])
                    batch = [event for index, event in enumerate(batch) if index not in refused]
                    if not batch:
                        return
                    attempt = 0
                    continue  # the others go again at once
            with self._cond:
                if self._closed:
                    self.dropped += len(batch)
                    return
            time.sleep(delay)


def _refused_indexes(response: httpx.Response, size: int) -> set[int]:
    """The events a 4xx answer names (`events[i].…`), or all of them if it names none."""
    try:
        details = response.json()["error"].get("details") or []
        named = {int(m.group(1)) for d in details if (m := _EVENT_INDEX.match(str(d.get("field", ""))))}
    except (ValueError, KeyError, TypeError, AttributeError):
        named = set()
    return {i for i in named if i < size} or set(range(size))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None
