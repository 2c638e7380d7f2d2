"""The package's import graph: no circle, and the CLI's argparse stays in commands/."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imported(path: Path, package: str) -> Iterator[str]:
    """Every name an import statement anywhere in the file (functions too) reaches."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            yield base
            yield from (f"{base}.{a.name}" for a in node.names)


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for target in _imported(path, package):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            # A module's own packages are imported before it anyway: not an edge.
            if target and target != name and not name.startswith(target + "."):
                graph[name].add(target)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circle() -> None:
    assert _circles(_graph()) == []


def test_the_finder_sees_a_circle() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nothing_below_the_commands_sees_argparse_or_the_commands() -> None:
    graph = _graph()
    # The worker child is a program of its own, with its own small command line.
    below = [m for m in graph if m.startswith("allocscope.bench") and not m.endswith(".worker")]
    for module in below:
        assert not [t for t in graph[module] if t.startswith("allocscope.commands")], module
        assert "argparse" not in set(_imported(_modules()[module], "")), module


@pytest.mark.parametrize(
    "program",
    ["allocscope.bench.kinds.workload.worker", "allocscope.bench.kinds.process.guard"],
)
def test_a_program_run_with_dash_m_is_not_imported_by_its_own_packages(program: str) -> None:
    """``python -m`` imports the packages first: one that imported the program would run it
    twice (runpy warns) and load the parent's modules (the runner, psutil) into every child."""
    check = (
        "import importlib, sys; "
        f"importlib.import_module({program.rpartition('.')[0]!r}); "
        "print(sorted(m for m in sys.modules if m.startswith('allocscope.bench')))"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    loaded = done.stdout
    assert program not in loaded and "runner" not in loaded and "psutil" not in loaded, loaded
    run = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-m", program, "--help"],
        stdin=subprocess.DEVNULL,  # the guard reads its pipe until end of file
        capture_output=True,
        text=True,
    )
    assert "RuntimeWarning" not in run.stderr, run.stderr
