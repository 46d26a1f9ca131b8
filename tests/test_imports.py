"""No import cycle among the modules of ``retina_lightning`` (issue 12): the graph holds every
import statement, at the top of a module and inside functions, read with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "retina_lightning"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """Every Import / ImportFrom node, leaving out ``if TYPE_CHECKING:`` blocks (never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (n for child in node.orelse for n in _imports_of(child))
            continue
        yield from _imports_of(node)


def _imports_of(node: ast.AST):
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    else:
        yield from _imports(node)


def import_graph() -> dict[str, set[str]]:
    """``module -> modules of retina_lightning it imports``. ``from retina_lightning.pkg import
    x`` points at the submodule ``pkg.x`` when that is a module, else at ``pkg`` (its
    ``__init__``, whose own imports then carry the re-export on to the defining module)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative: from the package holding this module
                    package = name.split(".")
                    package = package if is_package else package[:-1]
                    package = package[: len(package) - (node.level - 1)]
                    base = ".".join([*package, base] if base else package)
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            for target in targets:
                while target and target not in modules:  # `import a.b.c` of a non-module c
                    target = target.rpartition(".")[0]
                if target.startswith("retina_lightning") and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle ``[a, b, ..., a]`` of ``graph``, or ``None`` (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_graph_sees_function_level_and_reexported_imports():
    graph = import_graph()
    # function-level only: the loggers inside RetinaCLI.instantiate_trainer, the leaderboard
    # inside the dispatcher's `retina leaderboard`
    assert "retina_lightning.tracking" in graph["retina_lightning.lightning_cli"]
    assert "retina_lightning.leaderboard" in graph["retina_lightning.cli"]
    # `from retina_lightning.tasks import X` runs tasks/__init__, which imports both tasks
    assert {"retina_lightning.tasks.distillation", "retina_lightning.tasks.segmentation"} <= graph[
        "retina_lightning.tasks"
    ]
    assert "retina_lightning.runs" in graph["retina_lightning.transfer"]


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    if cycle:
        pytest.fail(
            "import cycle: " + " -> ".join(m.removeprefix("retina_lightning.") for m in cycle)
        )
