"""The import graph, read from the source with ``ast``: no cycles inside ``engine/``, and the app reaches the
engine through its facade (``import engine`` / ``from engine import name``) only.

Every import counts, also those inside functions (a lazy import still ties two modules together); imports
under ``if TYPE_CHECKING:`` do not, as they never run.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def module_files(package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``package`` (``engine.events`` is its ``__init__``)."""
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Import nodes that run (the bodies of ``if TYPE_CHECKING:`` are skipped; their ``else`` is not)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules that module ``name`` (file ``path``) imports, relative imports resolved. ``from p import x``
    imports ``p.x`` when that is a module of ours, else ``p`` itself."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        if node.level:
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        for alias in node.names:
            sub = f"{source}.{alias.name}"
            found.add(sub if sub in known else source)
    return found


def import_graph(*packages: str) -> dict[str, set[str]]:
    files = {name: path for package in packages for name, path in module_files(package).items()}
    known = set(files)
    return {name: imported_modules(name, path, known) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in graph:
                continue
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
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_engine_has_no_import_cycle():
    graph = import_graph("engine")
    assert len(graph) > 50 and "engine.decoding" in graph["engine.generation"]  # the graph was really read
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from .b import f\n")
    (tmp_path / "pkg" / "b.py").write_text("def f():\n    from . import a\n")
    (tmp_path / "pkg" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\n")
    known = {"pkg", "pkg.a", "pkg.b", "pkg.c"}
    graph = {name: imported_modules(name, tmp_path / (name.replace(".", "/") + ".py"), known)
             for name in ("pkg.a", "pkg.b", "pkg.c")}
    assert graph["pkg.c"] == {"typing"}
    assert cycles(graph) == [["pkg.a", "pkg.b"]]


def test_the_app_imports_only_the_engine_facade():
    app = module_files("mapperator_app")
    known = set(app) | set(module_files("engine"))  # so that ``from engine import checkpoint`` is caught
    reaching_in = sorted(f"{name} imports {target}" for name, path in app.items()
                         for target in imported_modules(name, path, known) if target.startswith("engine."))
    assert len(app) > 10
    assert reaching_in == []
