"""`session new --on-done CMD`: run once per ending (done or failed), claimed in the store."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sessions import control
from sessions.on_done import problem
from sessions.paths import db_path
from sessions.records import WorkerRecord, settle_state
from sessions.store import Store

PLAN = [{"idx": 0, "role": "anchor", "start_frame": 0, "end_frame": 17, "deps": [],
         "steps": 2}]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(db_path(tmp_path / "home")) as s:
        yield s


def new_session(store: Store, workspace: Path, cmd: str | None) -> int:
    pid = store.create_project("dance", image="ref.png", pose="pose.mp4", hand="hand.mp4",
                               prompt="a woman dances", framing="half-body")
    workspace.mkdir(parents=True)
    sid = store.create_session(pid, settings={}, seed=1, steps=2, cfg=5.0, share_steps="0",
                               share_blocks="2 4", anchor=0, budget=None, ckpt="/ckpt",
                               device="cpu", gpus="cpu", workspace=str(workspace),
                               on_done=cmd)
    store.init_chunks(sid, PLAN)
    store.set_session_state(sid, "running")
    return sid


def appending(out: Path) -> str:
    return f'echo "$POSEGEN_SESSION_STATE $POSEGEN_SESSION_ID $POSEGEN_PROJECT" >> {out}'


def worker(store: Store, sid: int) -> WorkerRecord:
    record = WorkerRecord(store, sid, "cpu")
    record.register(pid=os.getpid(), host="here")
    return record


def finish(store: Store, sid: int, workspace: Path) -> None:
    """A worker runs the one chunk to its end, merges and exits."""
    record = worker(store, sid)
    row = record.claim(None)
    assert row is not None
    record.finish(row["idx"], {"seconds": 1.0})
    (workspace / "video.mp4").write_bytes(b"video")
    record.end("finished")


def wait_lines(path: Path, n: int, timeout: float = 30.0) -> list[str]:
    """The file's lines once it has ``n`` (the detached command appends them)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= n:
            return lines
        time.sleep(0.01)
    raise AssertionError(f"{path} never had {n} lines")


def ran(store: Store, sid: int) -> list[str]:
    return [e["message"] for e in store.events(sid) if e["kind"] == "on_done"]


def test_two_settles_of_one_ending_run_it_once(store: Store, tmp_path: Path) -> None:
    out, ws = tmp_path / "out.txt", tmp_path / "ws"
    sid = new_session(store, ws, appending(out))
    finish(store, sid, ws)
    settle_state(store, sid)
    settle_state(store, sid)  # a second worker (or driver) out at the same moment
    assert wait_lines(out, 1) == [f"done {sid} dance"]
    assert len(ran(store, sid)) == 1 and ran(store, sid)[0].startswith("ran echo")
    assert store.claim_on_done(sid) is False
    # Its output goes to the workspace's log, after a header naming the ending.
    log = (ws / "logs" / "on_done.log").read_text()
    assert f"session {sid} done: echo" in log


def test_a_failure_then_resume_then_done_runs_it_twice(store: Store, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    out, ws = tmp_path / "out.txt", tmp_path / "ws"
    sid = new_session(store, ws, appending(out))
    record = worker(store, sid)
    row = record.claim(None)
    assert row is not None
    record.fail(row["idx"], "RuntimeError: out of memory")
    record.end("error")
    settle_state(store, sid)
    settle_state(store, sid)
    assert wait_lines(out, 1) == [f"failed {sid} dance"]
    # `posegen resume`: a new run (no real worker is spawned here) releases the claim.
    monkeypatch.setattr(control, "_detached", lambda *a, **k: 2**22 + 1)
    control.resume(store, sid, ["cpu"], home=tmp_path / "home")
    assert store.get_session(sid)["on_done_claimed_at"] is None
    finish(store, sid, ws)
    settle_state(store, sid)
    settle_state(store, sid)
    assert wait_lines(out, 2) == [f"failed {sid} dance", f"done {sid} dance"]
    assert len(ran(store, sid)) == 2


def test_a_pause_or_stop_runs_nothing(store: Store, tmp_path: Path) -> None:
    out, ws = tmp_path / "out.txt", tmp_path / "ws"
    sid = new_session(store, ws, appending(out))
    record = worker(store, sid)
    store.request(sid, "stop")
    record.end("stopped")
    settle_state(store, sid)
    assert store.get_session(sid)["state"] == "stopped"
    assert ran(store, sid) == [] and store.get_session(sid)["on_done_claimed_at"] is None


def test_a_session_without_a_command_claims_nothing(store: Store, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    sid = new_session(store, ws, None)
    finish(store, sid, ws)
    settle_state(store, sid)
    assert store.get_session(sid)["on_done_claimed_at"] is None and ran(store, sid) == []


def test_the_environment_names_the_session_video_and_workspace(store: Store,
                                                               tmp_path: Path) -> None:
    out, ws = tmp_path / "out.txt", tmp_path / "ws"
    sid = new_session(store, ws, f'echo "$POSEGEN_VIDEO|$POSEGEN_WORKSPACE|$PWD" >> {out}')
    finish(store, sid, ws)
    settle_state(store, sid)
    assert wait_lines(out, 1) == [f"{ws / 'video.mp4'}|{ws}|{ws}"]


@pytest.mark.parametrize(("cmd", "says"), [
    ("", "empty"), ("   ", "empty"), ("echo a\necho b", "control character \\n"),
    ("echo \x1b[31m", "control character \\x1b"), ("x" * 5000, "at most")])
def test_a_bad_command_is_refused_with_the_reason(cmd: str, says: str) -> None:
    text = problem(cmd)
    assert text is not None and says in text


def test_a_good_command_passes() -> None:
    assert problem('notify-send "posegen $POSEGEN_SESSION_ID $POSEGEN_SESSION_STATE"') is None
