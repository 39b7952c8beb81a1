"""Sessions end to end: real worker processes, real SQLite, the real `posegen` CLI."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import REFERENCE_STEPS, SAMPLE_FRAMES
from sessions_helpers import (
    init_project,
    make_session,
    ok,
    posegen,
    session_env,
    status,
)

from engine.media import load_frames, video_info
from sessions.control import request_stop
from sessions.paths import db_path
from sessions.store import Store, pid_alive

pytestmark = pytest.mark.slow  # real workers: each test 10-70 s

STEPS = REFERENCE_STEPS  # the one-process reference_run fixture's step count


@pytest.fixture
def reference(reference_run: Path) -> Path:
    return reference_run


@pytest.fixture
def home(tmp_path: Path, sample_dir: Path) -> Path:
    h = tmp_path / "home"
    init_project(h, sample_dir)
    return h


def frames_of(workspace: Path) -> list[np.ndarray]:
    return [load_frames(d / "frames.npy") for d in sorted((workspace / "chunks").iterdir())]


def assert_same_frames(workspace: Path, reference: Path) -> None:
    got, want = frames_of(workspace), frames_of(reference)
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


def events(home: Path, session: int) -> list[dict]:
    return Store(db_path(home)).events(session, limit=100000)


def live_pids(home: Path, session: int) -> list[int]:
    return [w["pid"] for w in Store(db_path(home)).workers(session, live_only=True)]


def steps_done(store: Store, session: int) -> int:
    return sum((c["step"] or 0) for c in store.chunks(session))


def test_start_wait_status_and_frames_match_one_process_run(home: Path, tiny_ckpt: Path,
                                                             reference: Path) -> None:
    sid = make_session(home, tiny_ckpt, "demo", "--steps", STEPS)
    ok(posegen(home, "start", str(sid)))
    ok(posegen(home, "wait", str(sid), "--timeout", "180"))
    snap = status(home, sid)
    assert snap["state"] == "done"
    assert [c["status"] for c in snap["chunks"]] == ["done"] * 5
    assert all(c["step"] == c["steps"] == int(STEPS) for c in snap["chunks"])
    assert snap["workers"] and not any(w["alive"] for w in snap["workers"])
    assert {"pid", "alive"} <= set(snap["workers"][0])
    assert video_info(snap["video"])[0] == SAMPLE_FRAMES
    assert_same_frames(Path(snap["workspace"]), reference)
    # Accounting for budget tuning: seconds per step recorded per chunk.
    rows = Store(db_path(home)).chunks(sid)
    assert all(r["seconds_per_step"] and r["seconds_per_step"] > 0 for r in rows)


def test_kill_9_at_20_random_points_then_resume_matches(home: Path, tiny_ckpt: Path,
                                                         reference: Path) -> None:
    """kill -9 the worker at random moments; nothing finished is lost or run twice."""
    rng = random.Random(1234)
    sid = make_session(home, tiny_ckpt, "demo", "--steps", STEPS)
    store = Store(db_path(home))
    workspace = Path(store.get_session(sid)["workspace"])
    finished: dict[str, str] = {}
    kills = 0
    deadline = time.monotonic() + 600
    while kills < 20 and time.monotonic() < deadline:
        proc = posegen(home, "resume", str(sid))
        if proc.returncode != 0 and "is done" in proc.stderr:
            break
        ok(proc)
        t_end = time.monotonic() + 60
        while not live_pids(home, sid) and time.monotonic() < t_end:
            time.sleep(0.01)
        # Let the worker get a random number of steps (0-3) and then some into its work.
        target = steps_done(store, sid) + rng.randint(0, 3)
        while steps_done(store, sid) < target and time.monotonic() < t_end:
            if not live_pids(home, sid):
                break
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.05))
        for pid in live_pids(home, sid):
            os.kill(pid, signal.SIGKILL)
            kills += 1
        _wait_dead(home, sid)
        # Finished chunks' records never change once written.
        for done in workspace.glob("chunks/*/done.json"):
            text = done.read_text()
            assert finished.setdefault(done.parent.name, text) == text
    assert kills >= 20, f"only {kills} kills before the session finished"
    ok(posegen(home, "resume", str(sid)))
    ok(posegen(home, "wait", str(sid), "--timeout", "180"))
    assert status(home, sid)["state"] == "done"
    assert_same_frames(workspace, reference)
    # No finished chunk was generated twice: one chunk_done per chunk, and no start after it.
    evs = events(home, sid)
    done_counts = Counter(e["chunk_idx"] for e in evs if e["kind"] == "chunk_done")
    assert done_counts == Counter(range(5))
    for idx in range(5):
        done_at = next(e["id"] for e in evs if e["kind"] == "chunk_done" and e["chunk_idx"] == idx)
        assert not [e for e in evs if e["kind"] == "chunk_start" and e["chunk_idx"] == idx
                    and e["id"] > done_at]


def _wait_dead(home: Path, sid: int, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        pids = [w["pid"] for w in Store(db_path(home)).workers(sid) if _alive(w["pid"])]
        if not pids:
            return
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child of ours may linger as a zombie until reaped.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.tmux
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_worker_survives_closing_its_terminal(home: Path, tiny_ckpt: Path, tmp_path: Path) -> None:
    sid = make_session(home, tiny_ckpt, "demo", "--steps", "40")
    name = f"posegen-test-{os.getpid()}"
    env = session_env(home)
    cmd = (f"cd {Path(__file__).resolve().parents[1]} && POSEGEN_HOME={home} "
           f"POSEGEN_HEARTBEAT_S=0.5 {os.sys.executable} -m sessions.cli start {sid}; "
           "sleep 600")
    subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "80", "-y", "24", cmd],
                   check=True, env=env)
    try:
        store = Store(db_path(home))
        end = time.monotonic() + 90
        while steps_done(store, sid) == 0 and time.monotonic() < end:
            time.sleep(0.1)
        pids = live_pids(home, sid)
        assert pids and steps_done(store, sid) > 0, "the worker never got going"
    finally:
        # Closing the terminal: the tmux session and its shell are gone (SIGHUP).
        subprocess.run(["tmux", "kill-session", "-t", name], check=False)
    before = steps_done(store, sid)
    end = time.monotonic() + 30
    while steps_done(store, sid) <= before and time.monotonic() < end:
        time.sleep(0.1)
    assert all(_alive(p) for p in pids), "the worker died with its terminal"
    assert steps_done(store, sid) > before, "the worker stopped making progress"
    ok(posegen(home, "wait", str(sid), "--timeout", "300"))
    assert status(home, sid)["state"] == "done"


def test_two_workers_never_claim_the_same_chunk(home: Path, tiny_ckpt: Path,
                                                reference: Path) -> None:
    sid = make_session(home, tiny_ckpt, "demo", "--steps", STEPS)
    ok(posegen(home, "start", str(sid), "--workers", "2"))
    ok(posegen(home, "wait", str(sid), "--timeout", "240"))
    evs = events(home, sid)
    starts = Counter(e["chunk_idx"] for e in evs if e["kind"] == "chunk_start")
    assert starts == Counter(range(5)), starts
    assert len({e["worker_id"] for e in evs if e["kind"] == "worker_start"}) == 2
    # Two CPU workers run one torch thread each, the reference two: float sums in another
    # order may move a pixel by one step of 255, never more.
    got, want = frames_of(Path(status(home, sid)["workspace"])), frames_of(reference)
    for a, b in zip(got, want, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_viewer_polling_four_times_a_second_never_sees_locked(home: Path, tiny_ckpt: Path
                                                              ) -> None:
    """Two workers write progress every step while a viewer reads 4x/s for a minute."""
    from sessions.control import snapshot

    sid = make_session(home, tiny_ckpt, "demo", "--steps", "25", "--num-chunks", "41")
    ok(posegen(home, "start", str(sid), "--workers", "2"))
    viewer = Store(db_path(home))
    reads, progress = 0, set()
    end = time.monotonic() + 60
    while time.monotonic() < end:
        snap = snapshot(viewer, sid)  # raises on "database is locked"
        progress.add(sum(c["step"] for c in snap["chunks"]))
        reads += 1
        time.sleep(0.25)
    ok(posegen(home, "stop", str(sid)))
    assert reads >= 200
    assert len(progress) > 20, "the workers were not writing while the viewer read"


def test_pause_frees_workers_and_resume_continues(home: Path, tiny_ckpt: Path,
                                                  reference: Path) -> None:
    sid = make_session(home, tiny_ckpt, "demo", "--steps", STEPS)
    store = Store(db_path(home))
    ok(posegen(home, "start", str(sid)))
    end = time.monotonic() + 60
    while steps_done(store, sid) < 3 and time.monotonic() < end:
        time.sleep(0.01)
    # The request `posegen pause` makes, made here: the CLI's start (it imports torch,
    # seconds on a busy machine) could outlast the rest of this tiny session.
    request_stop(store, sid, "pause")
    waited = posegen(home, "wait", str(sid), "--timeout", "60")
    assert "paused" in waited.stdout, waited.stdout + waited.stderr
    snap = status(home, sid)
    assert snap["state"] == "paused"
    assert not live_pids(home, sid), "a paused session keeps no worker (and no GPU memory)"
    assert 0 < sum(c["status"] == "done" for c in snap["chunks"]) < 5 or \
        any(0 < c["step"] < c["steps"] for c in snap["chunks"])
    ok(posegen(home, "resume", str(sid)))
    ok(posegen(home, "wait", str(sid), "--timeout", "180"))
    assert_same_frames(Path(snap["workspace"]), reference)


def test_retry_regenerates_chunk_and_its_dependents(home: Path, tiny_ckpt: Path,
                                                    reference: Path) -> None:
    sid = make_session(home, tiny_ckpt, "demo", "--steps", STEPS)
    ok(posegen(home, "start", str(sid)))
    ok(posegen(home, "wait", str(sid), "--timeout", "180"))
    out = ok(posegen(home, "retry", str(sid), "2", "--seed", "7"))
    listed = out.split("chunks [", 1)[1].split("]", 1)[0]
    assert sorted(int(x) for x in listed.split(",")) == [1, 2, 3]
    snap = status(home, sid)
    assert [c["status"] for c in snap["chunks"]][1:4] != ["done"] * 3
    ok(posegen(home, "resume", str(sid)))
    ok(posegen(home, "wait", str(sid), "--timeout", "180"))
    ws = Path(status(home, sid)["workspace"])
    got, want = frames_of(ws), frames_of(reference)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[4], want[4])
    assert not np.array_equal(got[2], want[2]), "a new seed must give new frames"
    assert json.loads((ws / "chunks" / "002" / "done.json").read_text())["extra"]["seed"] == 7


def test_stop_now_kills_the_workers_keeps_the_work_and_resume_matches(
        home: Path, tiny_ckpt: Path, reference: Path) -> None:
    """Issue #14, defect 5: `posegen stop` waits for a step boundary, which a worker that
    is loading models or encoding reaches only minutes later; `stop --now` ends the
    workers at once, as kill -9 would, and nothing finished is lost."""
    sid = make_session(home, tiny_ckpt, "demo", "--steps", STEPS)
    store = Store(db_path(home))
    ok(posegen(home, "start", str(sid)))
    end = time.monotonic() + 120
    while steps_done(store, sid) < 2 and time.monotonic() < end:
        time.sleep(0.01)
    pids = live_pids(home, sid)
    assert pids
    out = ok(posegen(home, "stop", str(sid), "--now"))
    assert f"posegen resume {sid}" in out
    assert not any(pid_alive(p) for p in pids)
    snap = status(home, sid)
    assert snap["state"] == "stopped"
    assert not any(c["status"] == "running" for c in snap["chunks"])
    assert any(e["kind"] == "stop_now" for e in store.events(sid))
    ok(posegen(home, "resume", str(sid)))
    ok(posegen(home, "wait", str(sid), "--timeout", "180"))
    assert_same_frames(Path(snap["workspace"]), reference)
