"""The package's import graph has no cycle (odc-geo's rule: a written dependency order)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import mosaic_assembler

PACKAGE = Path(mosaic_assembler.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _ancestor(a: str, b: str) -> bool:
    """Whether `b` is `a` or a package above it (imported with `a` anyway: not an edge)."""
    return a == b or a.startswith(b + ".")


def import_graph() -> dict[str, set[str]]:
    """Module → package modules it imports, at module level or inside functions."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".")
                    base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
            for t in targets:
                # the longest known module the name refers to
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and not _ancestor(name, t):
                    graph[name].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (cycle := visit(m)):
                return cycle
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (cycle := visit(n)):
            return cycle
    return None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


def test_cycle_finder_finds_one():
    # the check itself can fail
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_types_is_the_bottom():
    assert import_graph()["mosaic_assembler.types"] == set()


def _python(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return r.stdout.strip()


def test_library_import_leaves_rio_tiler_alone():
    # only the CLI's main() (a program, not a library) skips xarray (test_cli tests it):
    # a notebook keeps rio-tiler whole
    pytest.importorskip("xarray")
    out = _python(
        "import mosaic_assembler.api, rio_tiler.io.xarray as x\nprint(x.xarray is not None)"
    )
    assert out == "True"
