"""The engine's modules import each other without cycles (lazy imports included)."""

from __future__ import annotations

import ast

from tests.conftest import REPO


def harness_imports() -> dict[str, set[str]]:
    graph = {}
    for path in sorted((REPO / "harness").glob("*.py")):
        tree = ast.parse(path.read_text())
        graph[path.stem] = {
            node.module.split(".")[1]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("harness.")
        }
    return graph


def test_no_import_cycles_in_the_engine():
    graph = harness_imports()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        assert module not in path, " -> ".join([*path, module])
        if module in done:
            return
        for imported in graph.get(module, ()):
            visit(imported, [*path, module])
        done.add(module)

    for module in graph:
        visit(module, [])
    assert "tuning" not in graph["export"]  # the cycle the layering issue found
