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


# -- every change of stored state goes through the command layer -----------------------

COMMAND_LAYER = {"sessions/commands.py", "sessions/control.py", "sessions/records.py",
                 "sessions/store.py"}


def _store_mutators() -> set[str]:
    """The Store's methods that change projects, sessions, chunks or workers (events and
    GPU samples are a log, not state)."""
    from sessions.store import Store

    logs = {"add_event", "add_gpu_sample", "add_gpu_samples", "compact_gpu_samples"}
    reads = ("get_", "list_", "chunks", "workers", "events", "last_event", "latest_", "past_",
             "gpu_samples", "all_done", "close")
    return {name for name in vars(Store) if not name.startswith("_") and name not in logs
            and not name.startswith(reads) and callable(getattr(Store, name))}


def _state_writes(code: str, where: str, mutators: set[str]) -> list[str]:
    """Calls `X.mutator(...)` where X is not the command layer's own module name."""
    hits = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in mutators:
            owner = node.func.value
            if isinstance(owner, ast.Name) and owner.id in ("commands", "control", "records"):
                continue  # calling the command layer is how everyone else changes state
            hits.append(f"{where}:{node.lineno} .{node.func.attr}()")
    return hits


def test_state_is_changed_only_by_the_command_layer() -> None:
    mutators = _store_mutators()
    assert {"set_session_state", "claim_chunk", "finish_chunk", "create_session",
            "retry_chunk", "heartbeat", "request"} <= mutators  # the list is not empty
    hits = []
    for package in ("engine", "sessions", "posegen_tui"):
        for py in sorted((ROOT / package).rglob("*.py")):
            where = str(py.relative_to(ROOT))
            if where not in COMMAND_LAYER:
                hits += _state_writes(py.read_text(), where, mutators)
    assert hits == [], ("stored state changed outside sessions/commands.py, control.py and "
                        "records.py:\n" + "\n".join(hits))


def test_the_state_write_check_sees_a_direct_write() -> None:
    code = ("def f(store, commands):\n"
            "    commands.create_session(store, None)\n"
            "    store.set_session_state(1, 'running')\n")
    assert _state_writes(code, "x.py", _store_mutators()) == ["x.py:3 .set_session_state()"]


def test_the_app_never_runs_posegen_to_read_its_words() -> None:
    """Issue #14: the app calls the command layer; engine work goes through
    `sessions.tasks` (JSON), never a `posegen` subprocess whose output it parses."""
    hits = []
    for py in sorted((ROOT / "posegen_tui").rglob("*.py")):
        for node in ast.walk(ast.parse(py.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            hits += [f"{py.relative_to(ROOT)}:{node.lineno} imports {n}" for n in names
                     if n in ("subprocess", "sessions.cli") or n.startswith("sessions.cli.")]
            if isinstance(node, ast.Constant) and node.value == "sessions.cli":
                hits.append(f"{py.relative_to(ROOT)}:{node.lineno} runs sessions.cli")
    assert hits == []
