"""The package's shape holds: imports of routerlib modules sit at module level (import-linter in
`make lint` then sees every edge), and no module grows past one concern's size."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "routerlib"
#: The CLI's command dispatch may import its handlers lazily (so `routerlib --help` stays fast).
LAZY_ALLOWED = PACKAGE / "cli"
#: KFP lightweight components: KFP ships each function's own source to the task, so the function
#: must import what it calls (routerlib/vertex_pipelines.py).
COMPONENTS = {"point_task", "report_task"}
MAX_MODULE_LINES = 900


def _function_level_routerlib_imports(path: Path) -> list[str]:
    found: list[str] = []

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef) and child.name in COMPONENTS:
                continue
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if in_function and isinstance(child, ast.ImportFrom):
                if child.level or (child.module or "").startswith("routerlib"):
                    found.append(f"{path.name}:{child.lineno}: from {child.module} import …")
            elif in_function and isinstance(child, ast.Import):
                names = [a.name for a in child.names if a.name.startswith("routerlib")]
                found.extend(f"{path.name}:{child.lineno}: import {n}" for n in names)
            walk(child, inside)

    walk(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def test_routerlib_modules_are_imported_at_module_level() -> None:
    lazy = [
        line
        for path in sorted(PACKAGE.rglob("*.py"))
        if LAZY_ALLOWED not in path.parents
        for line in _function_level_routerlib_imports(path)
    ]
    assert not lazy, "move these imports to module level (or the name to a lower layer):\n" + (
        "\n".join(lazy)
    )


def test_the_checker_sees_a_function_level_import(tmp_path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from routerlib import metrics\n    import os\n")
    assert _function_level_routerlib_imports(module) == ["m.py:2: from routerlib import …"]


def test_no_module_is_over_900_lines() -> None:
    long = {
        str(p.relative_to(PACKAGE.parent)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"split these modules (one concern each): {long}"


def _circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in sorted(edges.get(module, ())):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return found


def test_no_import_circle_counting_every_import_kind() -> None:
    """Module level, inside functions and under TYPE_CHECKING alike (grimp, import-linter's
    graph), across packages and inside them."""
    import grimp

    graph = grimp.build_graph("routerlib")
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    assert _circles(edges) == []


def test_the_circle_finder_finds_a_circle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(edges) == [["a", "b", "c"]]
