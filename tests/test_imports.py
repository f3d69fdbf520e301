"""The package's modules import each other without cycles, and stay a readable size.

The import graph is read from the source with ``ast``: every ``import`` and ``from ...
import`` of a module of the package counts, at the top of a module or inside a function
(a lazy import that dodges a cycle at import time is still a cycle in the design); only
imports under ``if TYPE_CHECKING:`` are left out, since they never run. The test knows no
module by name, so it covers modules added later as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "webex_tokens"

#: Cycles that other work in progress removes, each with what removes it. A listed cycle
#: that is gone fails the test too: delete its line then.
PENDING: dict[frozenset[str], str] = {}

#: Lines a module may have before it should be split (about 600, as CONTRIBUTING says).
MAX_LINES = 620


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The dotted names an import statement may refer to (modules or their attributes)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".")
        if path.name != "__init__.py":
            base.pop()
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join([*base, *([node.module] if node.module else [])])
    else:
        prefix = node.module or ""
    return [prefix, *(f"{prefix}.{alias.name}" for alias in node.names)]


def _edges(module: str, path: Path, node: ast.AST, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``node``'s body imports, outside TYPE_CHECKING blocks."""
    edges: set[str] = set()
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                edges |= _edges(module, path, ast.Module(body=[other], type_ignores=[]), modules)
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            edges.update(
                name
                for name in _imported(module, path, child)
                # A package is loaded before its modules: importing it (``from . import
                # x``) adds no edge a cycle could run through.
                if name in modules and name != module and not module.startswith(name + ".")
            )
        edges |= _edges(module, path, child, modules)
    return edges


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {
        module: _edges(module, path, ast.parse(path.read_text(encoding="utf-8")), modules)
        for module, path in modules.items()
    }


def _cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: set[frozenset[str]] = set()

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                component.add(top)
                if top == node:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_the_graph_reader_sees_cycles() -> None:
    """The checker itself: a made-up graph with one cycle and one chain."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == {frozenset({"a", "b", "c"})}
    real = _graph()
    assert "webex_tokens.keeper" in real["webex_tokens.client"]  # lazy imports count too


def test_no_import_cycles() -> None:
    cycles = _cycles(_graph())
    unexpected = [sorted(cycle) for cycle in cycles if cycle not in PENDING]
    assert not unexpected, f"import cycles in webex_tokens: {unexpected}"
    gone = [sorted(cycle) for cycle in PENDING if cycle not in cycles]
    assert not gone, f"these cycles are gone: remove them from PENDING: {gone}"


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for other in graph[todo.pop()] - seen:
            seen.add(other)
            todo.append(other)
    return seen


def test_urls_is_a_leaf_under_the_registry_and_the_settings() -> None:
    """URLs are read in one leaf module, so the settings never need the registry (which
    loads the settings in ``open_store``): no cycle can run through the two."""
    graph = _graph()
    assert graph["webex_tokens.urls"] <= {"webex_tokens.errors"}
    assert "webex_tokens.urls" in graph["webex_tokens.registry"]
    assert "webex_tokens.urls" in graph["webex_tokens.settings"]
    for module in ("webex_tokens.settings", "webex_tokens.settings_file"):
        assert "webex_tokens.registry" not in _reachable(graph, module), module


def test_modules_stay_under_about_600_lines() -> None:
    long = {
        module: lines
        for module, path in _modules().items()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"
