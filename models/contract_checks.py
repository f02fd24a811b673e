"""Contract schemas and the check one event goes through. Pure functions: no I/O.

A contract's `schema_definition` comes in one of two forms:

- the compact form of the API reference: `{"properties": {"total": {"type": "number",
  "required": true}}}`, with nested `properties` for objects and `items` for arrays;
- a full JSON Schema (draft 2020-12).

`compile_schema()` turns either into JSON Schema and checks it; `CompiledContract` holds the
validator (built once per contract version) and checks one event's checked object:
`properties` for track/page/screen, `traits` for identify/group, `metadata` for audit.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError, ValidationError

from models.canonical import EventType

ALLOW, WARN, BLOCK, STRIP = "allow", "warn", "block", "strip"
ENFORCEMENT_MODES = (ALLOW, WARN, BLOCK)
UNDECLARED_POLICIES = (ALLOW, WARN, BLOCK, STRIP)
# An alias carries no payload to check.
CONTRACT_EVENT_TYPES = tuple(t for t in EventType if t is not EventType.ALIAS)
CHECKED_FIELD = {"track": "properties", "page": "properties", "screen": "properties",
                 "identify": "traits", "group": "traits", "audit": "metadata"}
KINDS = ("required_missing", "type_mismatch", "undeclared_field", "format", "enum", "other")
_KIND_OF = {"required": "required_missing", "type": "type_mismatch", "format": "format", "enum": "enum",
            "const": "enum"}
MAX_VIOLATIONS_PER_EVENT = 50


class SchemaInvalid(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def _pointer(parts: Any) -> str:
    return "".join(_step(part) for part in parts)


def _step(name: Any) -> str:
    """One JSON pointer step, escaped."""
    return "/" + str(name).replace("~", "~0").replace("/", "~1")


def is_compact(schema: dict[str, Any]) -> bool:
    """Compact form: no `$schema`/`type` at the root, and some property says `required` as a
    boolean (JSON Schema's `required` is always a list)."""
    if "$schema" in schema or "type" in schema:
        return False

    def has_boolean_required(node: Any) -> bool:
        if not isinstance(node, dict):
            return False
        if isinstance(node.get("required"), bool):
            return True
        children = list((node.get("properties") or {}).values()) if isinstance(node.get("properties"), dict) else []
        if isinstance(node.get("items"), dict):
            children.append(node["items"])
        return any(has_boolean_required(child) for child in children)

    properties = schema.get("properties")
    return isinstance(properties, dict) and any(has_boolean_required(p) for p in properties.values())


def _from_compact(node: dict[str, Any], path: list[Any]) -> dict[str, Any]:
    if not isinstance(node, dict):
        raise SchemaInvalid(_pointer(path), "a property definition must be an object")
    out = {k: v for k, v in node.items() if k not in ("required", "properties", "items")}
    if "required" in node and not isinstance(node["required"], bool):
        raise SchemaInvalid(_pointer([*path, "required"]), "required must be true or false in the compact form")
    properties = node.get("properties")
    if properties is not None:
        if not isinstance(properties, dict):
            raise SchemaInvalid(_pointer([*path, "properties"]), "properties must be an object")
        out.setdefault("type", "object")
        out["properties"] = {name: _from_compact(spec, [*path, "properties", name]) for name, spec in properties.items()}
        required = [name for name, spec in properties.items() if isinstance(spec, dict) and spec.get("required") is True]
        if required:
            out["required"] = required
    if "items" in node:
        out.setdefault("type", "array")
        out["items"] = _from_compact(node["items"], [*path, "items"])
    return out


def compile_schema(definition: Any) -> dict[str, Any]:
    """The JSON Schema a contract validates with. Raises SchemaInvalid naming where."""
    if not isinstance(definition, dict):
        raise SchemaInvalid("", "schema_definition must be an object")
    if is_compact(definition):
        schema = _from_compact(definition, [])
        schema["type"] = "object"
    else:
        schema = copy.deepcopy(definition)
    schema.setdefault("$schema", "https://json-schema.org/draft/2020-12/schema")
    if schema["$schema"].rstrip("#") != "https://json-schema.org/draft/2020-12/schema":
        raise SchemaInvalid("/$schema", "only JSON Schema draft 2020-12 is supported")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise SchemaInvalid(_pointer(exc.path), exc.message) from None
    if schema.get("type", "object") != "object":
        raise SchemaInvalid("/type", "a contract's schema describes an object (type must be \"object\")")
    return schema


# --- the fast path ---------------------------------------------------------------------------
# jsonschema builds every error it finds (~95 µs for a valid 10-property object here, 150–250
# µs for an invalid one). Most contracts use a few keywords — type, properties, required,
# items, string enums — so a schema made only of those is compiled into the source of one
# plain Python function (as fastjsonschema does) that reports exactly what jsonschema reports:
# kind, path, message (tests/test_contract_checks.py compares the two on random schemas and
# events). A schema using anything else is checked by jsonschema.

_ANNOTATIONS = {"$schema", "$comment", "title", "description", "examples", "default", "deprecated"}
# Parsed JSON holds exactly these classes (no subclasses), so a class test is enough; bool is
# its own class, so True is neither a number nor an integer, as in JSON Schema.
_TYPE_TESTS = {
    "object": "{v}.__class__ is dict",
    "array": "{v}.__class__ is list",
    "string": "{v}.__class__ is str",
    "number": "({v}.__class__ is int or {v}.__class__ is float)",
    "integer": "({v}.__class__ is int or ({v}.__class__ is float and {v}.is_integer()))",
    "boolean": "{v}.__class__ is bool",
    "null": "{v} is None",
}
MAX_FAST_DEPTH = 20
Check = Any  # (instance, out: list[Violation]) -> None


class _NotFast(Exception):
    pass


class _Source:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}

    def name(self, prefix: str) -> str:
        return f"{prefix}{len(self.lines)}_{len(self.constants)}"

    def constant(self, value: Any) -> str:
        name = f"C{len(self.constants)}"
        self.constants[name] = value
        return name

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)


def _emit(node: Any, var: str, path: str, depth: int, src: _Source) -> None:
    """Statements checking `var` against `node`. `path` is the expression of `var`'s JSON
    pointer: string literals joined by `+`, which Python folds into one constant when no
    array index is involved, so a violation's pointer costs nothing to build."""
    if not isinstance(node, dict) or depth > MAX_FAST_DEPTH:
        raise _NotFast
    for keyword, value in node.items():  # jsonschema's order: the schema's own
        if keyword in _ANNOTATIONS:
            continue
        if keyword == "type":
            names = [value] if isinstance(value, str) else value
            if not isinstance(names, list) or not names or any(n not in _TYPE_TESTS for n in names):
                raise _NotFast
            test = " or ".join(_TYPE_TESTS[n].format(v=var) for n in names)
            reprs = ", ".join(repr(n) for n in names)
            src.emit(depth, f"if not ({test}):")
            src.emit(depth + 1, f"out.append(V({path}, 'type_mismatch', CLIP(f'{{{var}!r}} is not of type ' {reprs!r})))")
        elif keyword in ("enum", "const"):
            allowed = value if keyword == "enum" else [value]
            if not isinstance(allowed, list) or not all(isinstance(a, str) for a in allowed):
                raise _NotFast  # jsonschema's equality of numbers, bools and containers is subtle
            members = src.constant(frozenset(allowed))
            shown = src.constant(value)
            src.emit(depth, f"if not ({var}.__class__ is str and {var} in {members}):")
            message = (f"f'{{{var}!r}} is not one of {{{shown}!r}}'" if keyword == "enum"
                       else f"f'{{{shown}!r}} was expected'")
            src.emit(depth + 1, f"out.append(V({path}, 'enum', CLIP({message})))")
        elif keyword == "required":
            if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
                raise _NotFast
            if value:
                # One set comparison when everything is there (the usual case), then each name.
                required = src.constant(frozenset(value))
                src.emit(depth, f"if {var}.__class__ is dict and not {var}.keys() >= {required}:")
                for name in value:
                    src.emit(depth + 1, f"if {name!r} not in {var}:")
                    src.emit(depth + 2, f"out.append(V({path} + {_step(name)!r}, 'required_missing', "
                                        f"{_clip(repr(name) + ' is required')!r}))")
        elif keyword == "properties":
            if not isinstance(value, dict):
                raise _NotFast
            if value:
                src.emit(depth, f"if {var}.__class__ is dict:")
                for name, child in value.items():
                    child_var = src.name("v")
                    src.emit(depth + 1, f"{child_var} = {var}.get({name!r}, MISSING)")
                    src.emit(depth + 1, f"if {child_var} is not MISSING:")
                    src.emit(depth + 2, "pass")
                    _emit(child, child_var, f"{path} + {_step(name)!r}", depth + 2, src)
        elif keyword == "items":
            index, item = src.name("i"), src.name("v")
            src.emit(depth, f"if {var}.__class__ is list:")
            src.emit(depth + 1, f"for {index}, {item} in enumerate({var}):")
            src.emit(depth + 2, "pass")
            _emit(value, item, f"{path} + '/' + str({index})", depth + 2, src)
        else:
            raise _NotFast


def fast_check(schema: dict[str, Any], base: str = "") -> Check | None:
    """A compiled check for `schema` (appending Violations with pointers under `base`), or
    None if the schema uses a keyword the fast path lacks."""
    src = _Source()
    src.emit(0, "def check(instance, out):")
    src.emit(1, "pass")
    try:
        _emit(schema, "instance", repr(base), 1, src)
        namespace: dict[str, Any] = {"MISSING": _MISSING, "V": Violation, "CLIP": _clip, **src.constants}
        exec(compile("\n".join(src.lines), "<contract>", "exec"), namespace)  # noqa: S102 — our own source
    except (_NotFast, RecursionError, SyntaxError):
        return None
    return namespace["check"]


_MISSING = object()


def _clip(message: str) -> str:
    return message if len(message) <= 300 else message[:297] + "..."


class Violation(NamedTuple):
    path: str  # JSON pointer from the event body's root
    kind: str
    message: str


@dataclass(slots=True)
class Outcome:
    violations: list[Violation] = field(default_factory=list)
    blocked: bool = False
    stripped: bool = False  # the checked object was changed (undeclared fields removed)


_PASSED = Outcome()  # shared by every event that passes unchanged: never edit it
_EMPTY: dict[str, Any] = {}  # what is checked when the event has no object to check: never edit it


class CompiledContract:
    """One contract version, compiled once: checks events, never raises on bad input."""

    def __init__(self, id: str, version: int, event_type: str, event_name: str | None, schema: dict[str, Any],
                 enforcement_mode: str, undeclared_fields: str, *, compiled: bool = True) -> None:
        """`compiled=False`: check with jsonschema only (the tests' oracle for the fast path)."""
        self.id = id
        self.version = version
        self.event_type = event_type
        self.event_name = event_name
        self.schema = schema
        self.mode = enforcement_mode
        self.undeclared = undeclared_fields
        self.field = CHECKED_FIELD[event_type]
        self.validator = Draft202012Validator(schema, format_checker=FormatChecker())
        self.fast = fast_check(schema, "/" + self.field) if compiled else None
        # check(body): checks (and, with `strip`, edits in place) one canonical event body. The
        # usual contract (compiled, checking, nothing to do about undeclared fields) takes
        # `_plain_check`: what `_full_check` does for it, with less on the way.
        plain = self.fast is not None and self.mode != ALLOW and self.undeclared == ALLOW
        self.check: Callable[[dict[str, Any]], Outcome] = self._plain_check if plain else self._full_check

    def _plain_check(self, body: dict[str, Any]) -> Outcome:
        value = body.get(self.field)
        violations: list[Violation] = []
        assert self.fast is not None  # the plain check is chosen only with a compiled one
        self.fast(value if value.__class__ is dict else _EMPTY, violations)
        if not violations:
            return _PASSED
        del violations[MAX_VIOLATIONS_PER_EVENT:]
        return Outcome(violations, self.mode == BLOCK)

    def _full_check(self, body: dict[str, Any]) -> Outcome:
        outcome = Outcome()
        if self.mode == ALLOW and self.undeclared != STRIP:
            return outcome
        value = body.get(self.field)
        instance = value if isinstance(value, dict) else {}
        base = "/" + self.field
        if self.undeclared == STRIP:
            outcome.stripped = _strip(self.schema, instance)
        if self.mode == ALLOW:
            return outcome
        violations = outcome.violations
        if self.fast is not None:
            self.fast(instance, violations)
            if not violations and self.undeclared not in (WARN, BLOCK) and not outcome.stripped:
                return _PASSED
        else:
            for error in self.validator.iter_errors(instance):
                violations.extend(_violations_of(error, base))
                if len(violations) >= MAX_VIOLATIONS_PER_EVENT:
                    break
        blocking = bool(violations)
        if self.undeclared in (WARN, BLOCK):
            undeclared = [Violation(base + _pointer(path), "undeclared_field", f"{path[-1]!r} is not declared in the contract")
                          for path in _undeclared(self.schema, instance, [])]
            violations.extend(undeclared)
            blocking = blocking or (self.undeclared == BLOCK and bool(undeclared))
        del violations[MAX_VIOLATIONS_PER_EVENT:]
        outcome.blocked = self.mode == BLOCK and blocking
        return outcome


def _violations_of(error: ValidationError, base: str) -> list[Violation]:
    kind = _KIND_OF.get(str(error.validator), "other")
    path = list(error.absolute_path)
    if kind == "required_missing":
        match = re.match(r"^'(.*)' is a required property$", error.message, re.DOTALL)
        name = match.group(1) if match else next(
            (n for n in cast(list[str], error.validator_value) if isinstance(error.instance, dict) and n not in error.instance), "")
        return [Violation(base + _pointer([*path, name]), kind, f"{name!r} is required")]
    return [Violation(base + _pointer(path), kind, _clip(error.message))]


def _declared(schema: dict[str, Any]) -> tuple[dict[str, Any], list[re.Pattern]] | None:
    """The properties an object schema declares, or None when it declares none (then
    nothing under it counts as undeclared)."""
    properties = schema.get("properties")
    patterns = schema.get("patternProperties") or {}
    if not isinstance(properties, dict) and not patterns:
        return None
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error:
            continue
    return (properties if isinstance(properties, dict) else {}), compiled


def _undeclared(schema: Any, instance: Any, path: list[Any]) -> list[list[Any]]:
    if not isinstance(schema, dict):
        return []
    found: list[list[Any]] = []
    if isinstance(instance, dict):
        declared = _declared(schema)
        if declared is None:
            return []
        properties, patterns = declared
        for key, value in instance.items():
            if key in properties:
                found.extend(_undeclared(properties[key], value, [*path, key]))
            elif not any(p.search(key) for p in patterns):
                found.append([*path, key])
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(instance):
            found.extend(_undeclared(schema["items"], item, [*path, index]))
    return found


def _strip(schema: Any, instance: Any) -> bool:
    """Remove undeclared keys in place; True when anything was removed."""
    changed = False
    for path in sorted(_undeclared(schema, instance, []), key=len, reverse=True):
        parent = instance
        for part in path[:-1]:
            parent = parent[part]
        del parent[path[-1]]
        changed = True
    return changed
