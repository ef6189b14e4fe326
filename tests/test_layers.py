"""The architecture as the imports show it: the runtime at the bottom, front ends over it, the build side
apart, no cycles. Read from the source, so a new upward import fails here before it tangles the code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGE = ROOT / "src" / "mlprep"
# leaves every layer may use
SHARED = {"mlprep", "mlprep.settings", "mlprep.settings_defaults", "mlprep.errors", "mlprep.redaction"}
# What each part may import besides itself and the shared leaves.
ALLOWED = {
    "runtime": set(),
    "batch": {"runtime"},
    "rest": {"runtime"},
    "kafka": {"runtime", "rest", "services"},  # the stream processor serves the REST API beside it
    "build": {"runtime"},  # the loader's file name; never a front end
    "spark": {"runtime", "build"},  # a run id is fetched from MLflow on the driver (build.fetch)
    "cli": {"runtime", "batch", "rest", "kafka", "build", "spark"},
    "__main__": {"cli"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mlprep"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("mlprep"))
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py") if "docker" not in p.parts}


def resolved(name: str) -> str | None:
    """The module an import names (``from mlprep.x import y`` may name a module or an attribute)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


GRAPH = {name: {m for m in map(resolved, imports_of(path)) if m and m != name} for name, path in MODULES.items()}


def part(name: str) -> str:
    return name.split(".")[1] if name.count(".") >= 1 else ""


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down(name):
    if name in SHARED:
        assert {part(m) for m in GRAPH[name]} <= {part(s) for s in SHARED} | {""}, GRAPH[name]
        return
    mine = part(name)
    allowed = ALLOWED.get(mine, {"runtime"}) | {mine}
    wrong = sorted(m for m in GRAPH[name] if m not in SHARED and part(m) not in allowed)
    assert not wrong, f"{name} imports {wrong}: {mine} may only use {sorted(allowed)} and the shared modules"


def test_no_import_cycle():
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        assert name not in visiting, "import cycle: " + " -> ".join([*visiting[visiting.index(name) :], name])
        visiting.append(name)
        for other in sorted(GRAPH[name]):
            visit(other)
        visiting.pop()
        done.add(name)

    for name in sorted(GRAPH):
        visit(name)
