"""The sandbox process: user JavaScript runs in a child process, never in the API or worker.

quickjs contains what JavaScript does, but not everything quickjs does: some out-of-memory
paths crash it (a segfault while building the error's backtrace), and its regular expression
engine backtracks without checking the time limit (`/(a+)+$/` on 30 characters runs for
half a minute). So a child process runs the engine (`activities.sandbox`), and a watchdog here
kills it when an event takes longer than the time limit plus a grace period or when the
child dies. The event it was running gets an error; the others of the batch are run again in
a fresh child. Nothing the code does can crash or hang the caller.
"""

from __future__ import annotations

import asyncio
import mmap
import multiprocessing
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

import orjson

from activities.sandbox import (
    SandboxLimits,
    TransformOutcome,
    TransformSourceError,
    check_source,
    transform_events,
)

GRACE_SECONDS = 1.0  # on top of the time limit, before a silent child is killed
MAX_DEATHS_PER_BATCH = 3  # then the rest of the batch fails without running


class Progress:
    """How many events of the current request the child has finished: 8 bytes of a file both
    processes map, so the child's heartbeat costs no system call."""

    def __init__(self, fd: int) -> None:
        self._map = mmap.mmap(fd, 8)

    @property
    def value(self) -> int:
        return struct.unpack_from("Q", self._map)[0]

    @value.setter
    def value(self, value: int) -> None:
        struct.pack_into("Q", self._map, 0, value)

    def close(self) -> None:
        self._map.close()


def _serve(conn: Connection, progress: Progress) -> None:
    """The child: answers requests until the parent closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent to handle
    count = 0

    def tick() -> None:
        nonlocal count
        count += 1
        progress.value = count

    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        count = progress.value = 0
        started = time.perf_counter()
        if request[0] == "check":
            _, source_code, limits = request
            try:
                check_source(source_code, limits)
                answer: Any = None
            except TransformSourceError as exc:
                answer = (exc.message, exc.line, exc.column)
        else:
            _, key, source_code, event_jsons, meta_jsons, limits, with_logs = request
            outcomes = transform_events(key, source_code, event_jsons, meta_jsons, limits, with_logs=with_logs,
                                        progress=tick)
            answer = [(o.event_jsons, o.fanned_out, o.error, o.logs) for o in outcomes]
        conn.send((answer, (time.perf_counter() - started) * 1000))


class ChildDied(Exception):
    def __init__(self, completed: int, reason: str) -> None:
        super().__init__(reason)
        self.completed, self.reason = completed, reason


class SandboxProcess:
    """One child process running JavaScript, used by one request at a time; started on first
    use and again after it is killed."""

    def __init__(self, limits: SandboxLimits | None = None) -> None:
        self.limits = limits or SandboxLimits()
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._progress: Progress | None = None
        self.deaths = 0  # children lost to a crash or the watchdog, for tests and logs

    # --- the async API -----------------------------------------------------------------------

    async def check(self, source_code: str) -> None:
        """Raises TransformSourceError if the code does not compile, defines no `transform`,
        or its top-level code fails."""
        problem = await asyncio.to_thread(self._check_blocking, source_code)
        if problem is not None:
            raise TransformSourceError(*problem)

    async def transform(self, key: tuple[str, int], source_code: str, events: list[dict[str, Any]],
                        meta: dict[str, Any], *, with_logs: bool = False) -> tuple[list[TransformOutcome], float]:
        """Every event through one transformation version, in order: (outcomes, milliseconds
        spent in the child). `transform`'s second argument is `meta`, plus each event's own
        `source_id` unless `meta` has one."""
        if "source_id" in meta:
            meta_jsons = [orjson.dumps(meta).decode()] * len(events)
        else:
            metas: dict[Any, str] = {}
            meta_jsons = []
            for event in events:
                source_id = event.get("source_id")
                meta_json = metas.get(source_id)
                if meta_json is None:
                    meta_json = metas[source_id] = orjson.dumps({**meta, "source_id": source_id}).decode()
                meta_jsons.append(meta_json)
        event_jsons = [orjson.dumps(event).decode() for event in events]
        return await asyncio.to_thread(self._transform_blocking, key, source_code, event_jsons, meta_jsons, with_logs)

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def close(self) -> None:
        with self._lock:
            self._stop()

    # --- on a thread ---------------------------------------------------------------------------

    def _check_blocking(self, source_code: str) -> tuple[str, int | None, int | None] | None:
        with self._lock:
            try:
                answer, _ = self._request(("check", source_code, self.limits), expected_steps=1)
            except ChildDied as died:
                return (f"the code failed while loading: {died.reason}", None, None)
            return answer

    def _transform_blocking(self, key: tuple[str, int], source_code: str, event_jsons: list[str],
                            meta_jsons: list[str], with_logs: bool) -> tuple[list[TransformOutcome], float]:
        total = len(event_jsons)
        outcomes: list[TransformOutcome | None] = [None] * total
        elapsed_ms = 0.0
        deaths = 0
        start = 0
        with self._lock:
            while start < total:
                if outcomes[start] is not None:  # the event a child died on
                    start += 1
                    continue
                end = next((i for i in range(start, total) if outcomes[i] is not None), total)
                asked = time.perf_counter()
                try:
                    answer, ms = self._request(("transform", key, source_code, event_jsons[start:end],
                                                meta_jsons[start:end], self.limits, with_logs), expected_steps=end - start)
                except ChildDied as died:
                    elapsed_ms += (time.perf_counter() - asked) * 1000  # until the watchdog stopped it
                    # The events before it finished but their answers died with the child: the
                    # next round runs them again in a fresh one.
                    deaths += 1
                    outcomes[start + died.completed] = TransformOutcome(error=died.reason)
                    if deaths >= MAX_DEATHS_PER_BATCH:
                        for i in range(total):
                            if outcomes[i] is None:
                                outcomes[i] = TransformOutcome(error=f"not run: the sandbox died {deaths} times in this batch")
                        break
                    continue
                elapsed_ms += ms
                for offset, (jsons, fanned_out, error, logs) in enumerate(answer):
                    outcomes[start + offset] = TransformOutcome(jsons, fanned_out, error, logs)
                start = end
        return [o for o in outcomes if o is not None], elapsed_ms

    def _request(self, request: tuple, expected_steps: int) -> tuple[Any, float]:
        """Send one request and wait for its answer, killing the child if one step (event)
        runs longer than the time limit plus the grace period, or if it dies."""
        if self._process is None or self._process.poll() is not None:
            self._start()
        assert self._conn is not None
        step_deadline = self.limits.time_ms / 1000 * 2 + GRACE_SECONDS
        try:
            self._conn.send(request)
        except (BrokenPipeError, OSError):
            self._stop()
            return self._request(request, expected_steps)
        seen, last_change = 0, time.monotonic()
        process, progress = self._process, self._progress
        assert process is not None and progress is not None
        while True:
            if self._conn.poll(0.05):
                try:
                    return self._conn.recv()
                except (EOFError, OSError):
                    return self._died(self._crash_reason())
            done = progress.value
            now = time.monotonic()
            if done != seen:
                seen, last_change = done, now
            elif now - last_change > step_deadline:
                return self._died(f"the transformation ran longer than {self.limits.time_ms} ms and was stopped")
            if process.poll() is not None:
                return self._died(self._crash_reason())

    def _died(self, reason: str) -> Any:
        assert self._progress is not None
        completed = self._progress.value
        self._stop()
        self.deaths += 1
        raise ChildDied(completed, reason)

    def _crash_reason(self) -> str:
        try:
            assert self._process is not None
            code = self._process.wait(1)
        except subprocess.TimeoutExpired:
            code = None
        how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        return f"the sandbox process crashed ({how}); quickjs does this on some out-of-memory paths"

    def _start(self) -> None:
        """A fresh interpreter (not a fork of this process, whose threads and event loop a fork
        would copy in a broken state): `python -m activities.sandbox_process FD FD`."""
        self._stop()
        parent, child = multiprocessing.Pipe()
        with tempfile.TemporaryFile() as counter:
            counter.truncate(8)
            self._progress = Progress(counter.fileno())
            fds = (child.fileno(), counter.fileno())
            self._process = subprocess.Popen(
                [sys.executable, "-m", "activities.sandbox_process", *map(str, fds)], pass_fds=fds,
                stdin=subprocess.DEVNULL, start_new_session=True)
        child.close()
        self._conn = parent

    def _stop(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait(5)
            self._process = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._progress is not None:
            self._progress.close()
            self._progress = None


if __name__ == "__main__":
    connection_fd, progress_fd = map(int, sys.argv[1:3])
    _serve(Connection(connection_fd), Progress(progress_fd))
