"""The package's shape: no import cycle, a configuration that imports no runtime, small modules.

The imports are read from the source with `ast`, all of them: those under `if TYPE_CHECKING:`
and inside functions count as much as the ones at the top, since a cycle that only type
checking or a late import hides is still two modules that each need the other.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "exporter"
CONFIG = "exporter.config"
CONFIG_MAY_IMPORT = "exporter.detectors"
"""The detector registry: a detector's settings model lives beside the detector."""
MAX_LINES = 400
REASON = "Over 400 lines because"


@dataclass(frozen=True)
class Module:
    """One module of the package, as its source says."""

    name: str
    path: Path
    is_package: bool


def _modules() -> dict[str, Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        out[name] = Module(name, path, is_package)
    return out


MODULES = _modules()


def _known(name: str) -> str:
    """The module `name` lives in: itself, or its nearest enclosing package of ours."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _imported(module: Module, source: str | None = None) -> Iterator[str]:
    """Every module of the package that `module` imports, wherever the import statement is."""
    tree = ast.parse(source or module.path.read_text(encoding="utf-8"), str(module.path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.name.split(".")
                parent = parent if module.is_package else parent[:-1]
                parent = parent[: len(parent) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            # `from exporter.text import card` imports the submodule `card`.
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        else:
            continue
        for name in names:
            if name == "exporter" or name.startswith("exporter."):
                yield _known(name)
                # Importing a submodule from outside its package runs the package's __init__.
                package = name.rpartition(".")[0]
                while package.count(".") and not module.name.startswith(package + "."):
                    if package in MODULES:
                        yield package
                    package = package.rpartition(".")[0]


GRAPH = {name: set(_imported(m)) - {name} for name, m in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _path(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One cycle through the component, to print: start, ..., start."""
    members = set(component)
    start = component[0]
    trail, seen = [start], {start}
    while True:
        succ = sorted(graph[trail[-1]] & members)
        back = [s for s in succ if s == start]
        if back and len(trail) > 1:
            return [*trail, start]
        fresh = [s for s in succ if s not in seen]
        if not fresh:
            return [*trail, *back]
        trail.append(fresh[0])
        seen.add(fresh[0])


def test_the_walk_sees_every_kind_of_import() -> None:
    source = """
from typing import TYPE_CHECKING
import exporter.logs
from exporter.text import card
from .scoring import state
if TYPE_CHECKING:
    from exporter.prometheus.client import PrometheusClient
def late():
    from exporter.config.durations import parse_duration
"""
    module = Module("exporter.example", PACKAGE / "example.py", is_package=False)
    assert set(_imported(module, source)) == {
        "exporter.logs",
        "exporter.text.card",
        "exporter.text",  # the package's __init__ runs first
        "exporter.scoring.state",
        "exporter.scoring",
        "exporter.prometheus.client",
        "exporter.prometheus",
        "exporter.config.durations",
        "exporter.config",
    }
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _path({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c"]) == ["a", "b", "c", "a"]


def test_no_import_cycles() -> None:
    cycles = _cycles(GRAPH)
    shown = [f"{' -> '.join(_path(GRAPH, c))}  (tangled: {', '.join(c)})" for c in cycles]
    assert not cycles, "import cycles:\n" + "\n".join(shown)


def test_config_imports_nothing_of_the_runtime() -> None:
    def inside(name: str, package: str) -> bool:
        return name == package or name.startswith(package + ".")

    outside = {
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        if inside(name, CONFIG)
        for target in targets
        if not inside(target, CONFIG) and not inside(target, CONFIG_MAY_IMPORT)
    }
    assert not outside, sorted(outside)
    assert GRAPH[CONFIG] == set(), "exporter/config/__init__.py must import nothing"


def _first_paragraph(module: Module) -> str:
    tree = ast.parse(module.path.read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree) or ""
    return doc.split("\n\n", 1)[0]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_small_or_say_why(name: str) -> None:
    module = MODULES[name]
    lines = len(module.path.read_text(encoding="utf-8").splitlines())
    if lines <= MAX_LINES:
        return
    reasons = [line for line in _first_paragraph(module).splitlines() if line.startswith(REASON)]
    assert reasons, (
        f"{module.path.relative_to(PACKAGE.parent)} has {lines} lines: split it by concern, or "
        f'say at the top of its docstring\'s first paragraph "{REASON} ..."'
    )
