"""The layout holds: no import cycles among our own modules, each layer imports only the
layers below it, workflows import no I/O library, and every activity stub a workflow calls
has a real activity of the same name and types."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from temporalio import activity

import workflows.activity_stubs as stubs
from activities.audit import AuditActivities
from activities.forwarding import ForwardingActivities
from activities.streams import StreamActivities

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("web", "models", "activities", "workflows", "forwarding", "orchestration", "ingest", "devstack", "telemetry",
            "audit")
MODULES = ("settings", "worker", "cli")
IO_LIBRARIES = ("sqlalchemy", "asyncpg", "quickjs", "aiohttp", "httpx", "orjson")


def first_party_modules() -> dict[str, Path]:
    found = {name: ROOT / f"{name}.py" for name in MODULES}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every first-party module `name` imports, at any depth of its code (a function's
    imports and TYPE_CHECKING ones count: a cycle hidden there is a cycle)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for imported in targets:
            module = imported
            while module and module not in known:  # `from a.b import name`: the module a.b
                module = module.rpartition(".")[0]
            if module and module != name:
                out.add(module)
    return out


def import_graph() -> dict[str, set[str]]:
    known = first_party_modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    assert cycles(import_graph()) == []


# Who may import whom: a layer imports itself and the layers listed (settings: anyone).
ALLOWED = {
    "models": {"models", "settings"},
    "workflows": {"workflows"},
    "telemetry": {"telemetry", "models", "settings"},
    "activities": {"activities", "models", "workflows", "forwarding", "audit", "telemetry", "settings"},
    "forwarding": {"forwarding", "activities", "models", "workflows", "telemetry", "settings"},
    "orchestration": {"orchestration", "workflows", "settings"},
    "ingest": {"ingest", "models", "telemetry", "settings"},
    "audit": {"audit", "models", "telemetry", "settings"},
    "web": {"web", "ingest", "models", "activities", "forwarding", "orchestration", "workflows", "audit", "telemetry",
            "settings"},
}


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layers_import_only_what_is_below_them(layer):
    wrong = {name: sorted(target for target in targets if target.split(".")[0] not in ALLOWED[layer])
             for name, targets in import_graph().items() if name.split(".")[0] == layer}
    assert {name: targets for name, targets in wrong.items() if targets} == {}


def test_importing_the_workflows_loads_no_io_library():
    names = sorted(name for name in first_party_modules() if name.startswith("workflows"))
    code = (f"import importlib, sys\nfor name in {names!r}: importlib.import_module(name)\n"
            f"print(sorted(m for m in {IO_LIBRARIES!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def real_activities() -> dict[str, typing.Callable]:
    found = {}
    for cls in (ForwardingActivities, StreamActivities, AuditActivities):
        for _, method in inspect.getmembers(cls, inspect.isfunction):
            definition = activity._Definition.from_callable(method)
            if definition is not None:
                found[definition.name] = method
    return found


def test_every_stub_has_a_real_activity_of_the_same_name_and_types():
    real = real_activities()
    stubbed = {activity._Definition.must_from_callable(fn).name: fn
               for _, fn in inspect.getmembers(stubs, inspect.iscoroutinefunction)}
    assert set(stubbed) == set(real)
    for name, stub in stubbed.items():
        stub_types = typing.get_type_hints(stub)
        real_types = typing.get_type_hints(real[name])
        assert stub_types == real_types, name
