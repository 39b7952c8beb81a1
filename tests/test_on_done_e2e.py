"""`--on-done` through the real CLI and real workers: refused when bad, shown by status,
run exactly once by a session that was killed mid-chunk and resumed."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import mid_chunk_state
from sessions_helpers import init_project, make_session, ok, posegen

from sessions.paths import db_path
from sessions.store import Store, pid_alive

STEPS = 4


@pytest.fixture
def home(tmp_path: Path, sample_dir: Path) -> Path:
    h = tmp_path / "home"
    init_project(h, sample_dir)
    return h


def until(condition: Callable[[], object], what: str, timeout: float = 180.0) -> None:
    """Wait for ``condition()`` (polling), never for a fixed time."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_a_bad_command_is_refused_with_the_other_problems(home: Path, tmp_path: Path) -> None:
    for cmd, says in (("", "--on-done is empty"), ("a\x07b", "control character \\x07")):
        proc = posegen(home, "session", "new", "demo", "--ckpt", str(tmp_path / "no-ckpt"),
                       "--on-done", cmd)
        assert proc.returncode == 2 and says in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert Store(db_path(home)).list_sessions() == []


@pytest.mark.slow  # real workers on the tiny checkpoint: about 35 s on 2 cores
def test_killed_mid_chunk_then_resumed_runs_it_exactly_once(home: Path, tiny_ckpt: Path,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "ended.txt"
    cmd = f'echo "$POSEGEN_SESSION_STATE $POSEGEN_SESSION_ID" >> {out}'
    sid = make_session(home, tiny_ckpt, "demo", "--steps", str(STEPS), "--on-done", cmd)
    assert f"on done: {cmd}" in ok(posegen(home, "status", str(sid)))
    store = Store(db_path(home))
    workspace = Path(store.get_session(sid)["workspace"])

    def live() -> list[int]:
        return [w["pid"] for w in store.workers(sid, live_only=True)]

    ok(posegen(home, "start", str(sid)))
    until(lambda: live() and mid_chunk_state(workspace, STEPS) is not None, "a step mid-chunk")
    pids = live()
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    until(lambda: not any(pid_alive(p) for p in pids), "the killed worker to go")
    # A kill is no ending: nothing ran.
    assert store.get_session(sid)["state"] != "done"
    assert not out.exists() and store.get_session(sid)["on_done_claimed_at"] is None

    ok(posegen(home, "resume", str(sid)))
    ok(posegen(home, "wait", str(sid), "--timeout", "180"))
    # The last worker settles "done", then claims and starts the command, then exits.
    until(lambda: not live() and not any(pid_alive(w["pid"]) for w in store.workers(sid)),
          "the workers to exit")
    until(lambda: out.exists() and out.read_text().endswith("\n"), "the command's line")
    assert out.read_text().splitlines() == [f"done {sid}"]
    events = [e for e in store.events(sid, limit=100000) if e["kind"] == "on_done"]
    assert len(events) == 1 and events[0]["message"].startswith(f"ran {cmd} (pid ")
    assert "(ran for its last ending)" in ok(posegen(home, "status", str(sid)))
