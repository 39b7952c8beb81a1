"""The layers stay apart: the engine runs without the app or the store, the store without the app.

Like Harlequin's headless-core test: import every module of a package in a
fresh interpreter and look at what came along.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def modules_of(package: str) -> list[str]:
    path = ROOT / package
    return [package] + [f"{package}.{m.name}" for m in
                        pkgutil.walk_packages([str(path)]) if not m.name.startswith("_")]


@pytest.mark.parametrize(("package", "forbidden"), [
    ("engine", ["textual", "posegen_tui", "sessions", "sqlite_utils"]),
    ("sessions", ["textual", "posegen_tui"]),
])
def test_package_imports_without(package: str, forbidden: list[str]) -> None:
    code = (
        "import importlib, sys\n"
        f"for m in {modules_of(package)!r}:\n"
        "    importlib.import_module(m)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r})\n"
        "print(','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"{package} pulled in {proc.stdout.strip()}"


def _sql_files() -> list[Path]:
    hits = []
    for py in ROOT.glob("*/**/*.py"):
        if py.parts[len(ROOT.parts)] in ("sessions", "tests", ".venv", "build"):
            continue
        tree = ast.parse(py.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value.upper()
                keyword = any(k in text for k in ("SELECT ", "INSERT INTO", "UPDATE ",
                                                  "CREATE TABLE"))
                if keyword and any(k in text for k in (" FROM ", "INTO", "SET ", "TABLE")):
                    hits.append(py)
                    break
    return hits


def test_only_sessions_holds_sql() -> None:
    assert _sql_files() == []
