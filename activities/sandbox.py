"""User JavaScript transformations, run in quickjs with no host access.

A transformation's `source_code` defines `function transform(event, meta)`; it returns the
changed event, `null`/`undefined` to drop it, or an array of events to fan it out. Each call
runs under a memory and a time limit; whatever the code does (loops forever, allocates without
end, recurses without end, throws a string, returns a function, a cycle, a BigInt or NaN) the
caller gets a per-event error, never a crash or a hang.

This module is the engine; it runs inside the sandbox process (`activities.sandbox_process`),
which also survives what quickjs itself does not: a crash on some out-of-memory paths, and
regular expressions that backtrack for minutes without checking the time limit. quickjs
contexts are not thread-safe, so each thread keeps its own, compiled once per
(transformation, version).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import quickjs

if TYPE_CHECKING:
    from settings import Settings

MAX_LOG_LINES = 100
MAX_LOG_LINE_CHARS = 1000
MAX_ERROR_CHARS = 500
GC_EVERY_CALLS = 1000  # quickjs frees by reference count; cycles wait for its collector
CONTEXTS_PER_THREAD = 64

# Defined before the user's code and handed to Python as function objects, so nothing the
# user's code does to globals (JSON, console, these names) changes how results come back.
# Results are strings: "o" + the output's JSON, "a" + the JSON of each event of a fan-out
# joined by newlines (JSON text never holds a raw newline), "d" (dropped), or "e" + an error
# message. The caller gets each event's JSON without parsing it: delivery sends it as it is.
_PRELUDE = r"""
(function () {
  "use strict";
  const stringify = JSON.stringify, parse = JSON.parse, isArray = Array.isArray;
  const prototypeOf = Object.getPrototypeOf, plain = Object.prototype;
  const MAX_LINES = %(lines)d, MAX_CHARS = %(chars)d;
  let logs = [];
  function show(value) {
    try {
      if (typeof value === "string") return value;
      const text = stringify(value);
      return text === undefined ? String(value) : text;
    } catch (e) {
      try { return String(value); } catch (e2) { return "[unprintable]"; }
    }
  }
  function log(...values) {
    if (logs.length < MAX_LINES) logs.push(values.map(show).join(" ").slice(0, MAX_CHARS));
  }
  globalThis.console = Object.freeze({log: log, info: log, warn: log, error: log, debug: log});
  function describe(thrown) {
    if (thrown instanceof Error) {
      try { return String(thrown.name) + ": " + String(thrown.message); } catch (e) { return "Error"; }
    }
    return "threw a non-Error value: " + show(thrown);
  }
  function jsonOnly(key, value) {
    const kind = typeof value;
    if (kind === "function" || kind === "symbol" || kind === "bigint")
      throw new TypeError("the result is not JSON: a " + kind + " at " + stringify(key || "(top)"));
    if (kind === "number" && !isFinite(value))
      throw new TypeError("the result is not JSON: " + value + " at " + stringify(key || "(top)"));
    return value;
  }
  function isEvent(value) {  // a plain object: not an array, a Promise, a Date...
    if (value === null || typeof value !== "object") return false;
    const proto = prototypeOf(value);
    return proto === plain || proto === null;
  }
  function kindOf(value) {
    if (value === null || typeof value !== "object") return typeof value;
    try { return isArray(value) ? "array" : String(prototypeOf(value).constructor.name); } catch (e) { return "object"; }
  }
  let metaJson = null, meta = null;  // most calls of a batch share one meta: parse it once
  globalThis.__headwater_bind = function (transform) {
    return function run(input, nextMetaJson) {
      if (logs.length) logs = [];
      if (nextMetaJson !== metaJson) { meta = Object.freeze(parse(nextMetaJson)); metaJson = nextMetaJson; }
      let out;
      try { out = transform(parse(input), meta); }
      catch (e) { return "e" + describe(e); }
      if (out === null || out === undefined) return "d";
      if (isArray(out)) {
        for (let i = 0; i < out.length; i++)
          if (!isEvent(out[i])) return "etransform returned an array whose item " + i + " is not an object (got " + kindOf(out[i]) + ")";
        if (out.length === 0) return "d";
        try { return "a" + out.map(item => stringify(item, jsonOnly)).join("\n"); }
        catch (e) { return "e" + describe(e); }
      } else if (!isEvent(out)) {
        return "etransform must return an object, an array of objects, null or undefined (got " + kindOf(out) + ")";
      }
      try { return "o" + stringify(out, jsonOnly); }
      catch (e) { return "e" + describe(e); }
    };
  };
  globalThis.__headwater_logs = function () { return stringify(logs); };
})();
""" % {"lines": MAX_LOG_LINES, "chars": MAX_LOG_LINE_CHARS}  # noqa: UP031 (str.format: every JS brace doubled)

# Probes a syntax error's column: the shortest prefix of the failing line that already fails
# with the same message is where the offending token starts (quickjs reports the line only).
# Each prefix is parsed, never run: first as a function body (`new Function`, whose closing
# brace keeps an unfinished prefix from failing early at its end), then, if that finds nothing
# (an extra `}` closes the wrapper itself), as a script whose first statement throws.
_COLUMN_PROBE = r"""
(function (before, line, message) {
  const parsers = [(code) => new Function(code), (code) => (0, eval)("throw 0;" + code)];
  for (const parse of parsers) {
    for (let i = 1; i <= line.length; i++) {
      try { parse(before + line.slice(0, i)); }
      catch (e) { if (e instanceof SyntaxError && e.message === message) return i; }
    }
  }
  return 0;
})
"""
# quickjs's message when the input ends where more was expected.
_AT_END_OF_INPUT = "''"


@dataclass(frozen=True)
class SandboxLimits:
    memory_bytes: int = 16 * 1024 * 1024
    time_ms: int = 100
    stack_bytes: int = 256 * 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> SandboxLimits:
        return cls(memory_bytes=settings.transform_memory_mb * 1024 * 1024, time_ms=settings.transform_time_ms)


@dataclass(slots=True)
class TransformOutcome:
    """One event through a transformation: the JSON of each event it became (none when
    dropped; several when `fanned_out`), or an `error`."""
    event_jsons: list[str] = field(default_factory=list)
    fanned_out: bool = False
    error: str | None = None
    logs: list[str] = field(default_factory=list)

    @property
    def dropped(self) -> bool:
        return self.error is None and not self.event_jsons

    @property
    def events(self) -> list[dict[str, Any]]:
        return [orjson.loads(text) for text in self.event_jsons]


class TransformSourceError(Exception):
    """The source code cannot be used: a syntax error, no `transform`, or top-level code that fails."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.message, self.line, self.column = message, line, column


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0][:MAX_ERROR_CHARS]


def _new_context(limits: SandboxLimits) -> quickjs.Context:
    context = quickjs.Context()
    context.set_memory_limit(limits.memory_bytes)
    context.set_time_limit(limits.time_ms / 1000)
    context.set_max_stack_size(limits.stack_bytes)
    return context


def _syntax_error(source_code: str, error: str) -> TransformSourceError:
    message = _first_line(error).removeprefix("SyntaxError: ")
    line = None
    for part in reversed(error.split("<input>:")[1:]):
        digits = part.split("\n", 1)[0].split(":", 1)[0]
        if digits.isdigit():
            line = int(digits)
            break
    column = None
    lines = source_code.split("\n")
    if message.endswith(_AT_END_OF_INPUT):  # the input ended too soon: point at its end
        message, line, column = "unexpected end of input", len(lines), len(lines[-1]) + 1
    elif line is not None:
        if line <= len(lines):
            probe = _new_context(SandboxLimits(time_ms=1000))
            found = probe.eval(_COLUMN_PROBE)("\n".join(lines[: line - 1]) + ("\n" if line > 1 else ""),
                                              lines[line - 1][:2000], message)
            column = found or None
        if column is None:
            text = lines[line - 1] if line <= len(lines) else ""
            column = len(text) - len(text.lstrip()) + 1
    where = f" (line {line}, column {column})" if line is not None else ""
    return TransformSourceError(f"SyntaxError: {message}{where}", line, column)


class CompiledTransform:
    """One transformation version in one quickjs context. Use it from one thread only."""

    def __init__(self, source_code: str, limits: SandboxLimits = SandboxLimits()) -> None:
        self.source_code, self.limits = source_code, limits
        self._calls = 0
        self._compile()

    def _compile(self) -> None:
        context = _new_context(self.limits)
        context.eval(_PRELUDE)
        bind, self._logs = context.get("__headwater_bind"), context.get("__headwater_logs")
        try:
            context.eval(self.source_code)
        except quickjs.JSException as exc:
            text = str(exc)
            if text.startswith("SyntaxError"):
                raise _syntax_error(self.source_code, text) from None
            raise TransformSourceError(f"the code failed while loading: {_first_line(text)}") from None
        transform = context.get("transform")
        if not isinstance(transform, quickjs.Object) or context.eval("typeof transform") != "function":
            raise TransformSourceError("source_code must define function transform(event)")
        self._context, self._run = context, bind(transform)

    def run(self, event: dict[str, Any], meta: dict[str, Any] | None = None, *, with_logs: bool = False) -> TransformOutcome:
        return self.run_json(orjson.dumps(event).decode(), orjson.dumps(meta or {}).decode(), with_logs=with_logs)

    def run_json(self, event_json: str, meta_json: str, *, with_logs: bool = False) -> TransformOutcome:
        if self._run is None:
            self._compile()
        self._calls += 1
        try:
            result = self._run(event_json, meta_json)
        except quickjs.JSException as exc:
            # Uncatchable inside JS (interrupted) or the wrapper itself ran out of memory or
            # stack: the context may hold garbage, so the next call gets a fresh one.
            self._run = None
            text = _first_line(str(exc))
            if "interrupted" in text:
                text = f"the transformation ran longer than {self.limits.time_ms} ms"
            return TransformOutcome(error=text)
        logs = orjson.loads(self._logs()) if with_logs else []
        if self._calls % GC_EVERY_CALLS == 0:
            self._context.gc()
        kind, body = result[0], result[1:]
        if kind == "o":
            return TransformOutcome([body], logs=logs)
        if kind == "a":
            return TransformOutcome(body.split("\n"), fanned_out=True, logs=logs)
        if kind == "d":
            return TransformOutcome(logs=logs)
        mib = self.limits.memory_bytes // 1024 // 1024
        if body == "threw a non-Error value: null":
            # Out of memory, quickjs may fail to allocate the error itself and throw null.
            self._run = None
            body = f"threw null, or ran out of memory (limit {mib} MiB) and quickjs could not build the error"
        elif "out of memory" in body or "stack overflow" in body:
            self._run = None
            body = body.replace("InternalError: out of memory", f"InternalError: out of memory (limit {mib} MiB)")
        return TransformOutcome(error=body[:MAX_ERROR_CHARS], logs=logs)


def check_source(source_code: str, limits: SandboxLimits = SandboxLimits()) -> None:
    """Raises TransformSourceError if the code cannot run (compiled and discarded here)."""
    CompiledTransform(source_code, limits)


_per_thread = threading.local()


def compiled_transform(key: tuple[str, int], source_code: str, limits: SandboxLimits = SandboxLimits()) -> CompiledTransform:
    """This thread's compiled copy of a transformation version, compiled on first use (and
    again if the code under that key is not the code it was compiled from)."""
    cache: OrderedDict[tuple[str, int], CompiledTransform] | None = getattr(_per_thread, "cache", None)
    if cache is None:
        cache = _per_thread.cache = OrderedDict()
    compiled = cache.get(key)
    if compiled is None or compiled.limits != limits or compiled.source_code != source_code:
        compiled = cache[key] = CompiledTransform(source_code, limits)
        while len(cache) > CONTEXTS_PER_THREAD:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return compiled


def transform_events(key: tuple[str, int], source_code: str, event_jsons: list[str], meta_jsons: list[str],
                     limits: SandboxLimits = SandboxLimits(), *, with_logs: bool = False,
                     progress: Callable[[], None] | None = None) -> list[TransformOutcome]:
    """Every event of a batch (as JSON text, with its `meta` as JSON text) through one
    transformation version. `progress` is called after each event (the watchdog's heartbeat)."""
    try:
        compiled = compiled_transform(key, source_code, limits)
    except TransformSourceError as exc:  # e.g. top-level code that no longer fits the limits
        return [TransformOutcome(error=exc.message) for _ in event_jsons]
    outcomes = []
    for event_json, meta_json in zip(event_jsons, meta_jsons, strict=True):
        outcomes.append(compiled.run_json(event_json, meta_json, with_logs=with_logs))
        if progress is not None:
            progress()
    return outcomes
