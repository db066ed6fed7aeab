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


def imported_packages(folder: str) -> dict[str, set[str]]:
    """{file: top-level project packages it imports} for every .py file under `folder`."""
    project = {"harness", "harness_core", "pipelines", "search_spaces"}
    found = {}
    for path in sorted((REPO / folder).glob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
        found[path.name] = names & project
    return found


def test_plugins_and_the_leaf_never_import_the_engine():
    # harness -> pipelines, search_spaces -> harness_core; never the reverse.
    for folder in ("pipelines", "search_spaces"):
        for name, packages in imported_packages(folder).items():
            assert "harness" not in packages, f"{folder}/{name} imports harness"
    for name, packages in imported_packages("harness_core").items():
        assert packages <= {"harness_core"}, f"harness_core/{name} imports {packages}"
