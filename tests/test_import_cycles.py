"""No import cycles in the app: no module of `posegen_tui` reaches itself through imports.

The graph is grimp's (the one `lint-imports` checks the layer contracts on) and it counts
every import: at module level, inside functions, and under `if TYPE_CHECKING:`. A type-only
import back to `app.py` is still a circle that a reader (and a refactoring) has to follow.
"""

from __future__ import annotations

import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]


def import_graph(package: str) -> grimp.ImportGraph:
    return grimp.build_graph(package, exclude_type_checking_imports=False, cache_dir=None)


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        order[module] = low[module] = len(order)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in order:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], order[imported])
        if low[module] == order[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in order:
            visit(module)
    return sorted(found)


def describe(graph: grimp.ImportGraph, component: list[str]) -> str:
    """The component's modules and the import lines that tie them together."""
    lines = ["a cycle among " + ", ".join(component)]
    for importer in component:
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if imported in component:
                for d in graph.get_import_details(importer=importer, imported=imported):
                    lines.append(f"    {importer}:{d['line_number']}: {d['line_contents']}")
    return "\n".join(lines)


def test_no_import_cycles_in_the_app() -> None:
    graph = import_graph("posegen_tui")
    assert "posegen_tui.app" in graph.modules
    found = cycles(graph)
    assert not found, "import cycles in posegen_tui:\n" + "\n".join(
        describe(graph, c) for c in found)


def test_the_check_sees_type_checking_and_function_level_imports(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The graph would miss a circle closed by a type-only or a lazy import: it doesn't."""
    pkg = tmp_path / "cyclepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from cyclepkg import b\n    return b\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    from cyclepkg import a\n")
    (pkg / "c.py").write_text("import cyclepkg.a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "cyclepkg", raising=False)
    assert cycles(import_graph("cyclepkg")) == [["cyclepkg.a", "cyclepkg.b"]]
