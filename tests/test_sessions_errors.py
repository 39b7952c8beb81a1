"""Bad input: one line that names the fix, and nothing finished is changed."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REFERENCE_STEPS, TINY_ARGS
from sessions_helpers import ROOT, init_project, make_session, ok, posegen, session_env, status

from engine.media import load_frames
from sessions.paths import db_path
from sessions.store import Store


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("posegen: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture
def home(tmp_path: Path, sample_dir: Path) -> Path:
    h = tmp_path / "home"
    init_project(h, sample_dir)
    return h


def test_unknown_session(home: Path) -> None:
    for cmd in (["status", "99"], ["start", "99"], ["retry", "99", "0"], ["pause", "99"]):
        assert "unknown session 99" in one_line_error(posegen(home, *cmd))


def test_prompt_without_subject_is_refused_at_init(home: Path, sample_dir: Path) -> None:
    line = one_line_error(posegen(home, "init", "p2", "--image", str(sample_dir / "reference.png"),
                                  "--pose", str(sample_dir / "pose.mp4"),
                                  "--hand", str(sample_dir / "hand.mp4"),
                                  "--prompt", "a human dances"))
    assert "woman, girl, man, boy" in line
    assert [p["name"] for p in Store(db_path(home)).list_projects()] == ["demo"]


def test_second_start_and_bad_retry_change_nothing(home: Path, tiny_ckpt: Path) -> None:
    sid = make_session(home, tiny_ckpt, "demo", "--steps", "200")
    ok(posegen(home, "start", str(sid)))
    try:
        line = one_line_error(posegen(home, "start", str(sid)))
        assert "already running" in line and f"posegen pause {sid}" in line
        end = time.monotonic() + 120  # the worker stores the chunk plan when it starts
        while not status(home, sid)["chunks"] and time.monotonic() < end:
            time.sleep(0.1)
        before = [(c["index"], c["status"], c["seed"]) for c in status(home, sid)["chunks"]]
        assert before
        line = one_line_error(posegen(home, "retry", str(sid), "9"))
        assert "9" in line and "0" in line and "4" in line  # names the valid range
        after = [(c["index"], c["status"], c["seed"]) for c in status(home, sid)["chunks"]]
        assert [b[0] for b in before] == [a[0] for a in after]
        assert len(Store(db_path(home)).workers(sid, live_only=True)) == 1
    finally:
        ok(posegen(home, "stop", str(sid)))
        posegen(home, "wait", str(sid), "--timeout", "60")


def test_two_starts_at_once_start_one_set_of_workers(home: Path, tiny_ckpt: Path) -> None:
    """`posegen start 1 & posegen start 1 & wait`: one starts the worker, the other is
    refused, even before the first worker has registered itself."""
    sid = make_session(home, tiny_ckpt, "demo", "--steps", "200")
    cmd = [sys.executable, "-m", "sessions.cli", "start", str(sid)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=session_env(home), cwd=ROOT) for _ in range(2)]
    try:
        results = sorted((p.wait(timeout=120), p.stderr.read()) for p in procs)
        assert [code for code, _ in results] == [0, 2], results
        assert "already running" in results[1][1]
        store = Store(db_path(home))
        end = time.monotonic() + 120
        while not store.workers(sid, live_only=True) and time.monotonic() < end:
            time.sleep(0.05)
        assert len(store.workers(sid, live_only=True)) == 1
    finally:
        ok(posegen(home, "stop", str(sid)))
        posegen(home, "wait", str(sid), "--timeout", "60")


def test_corrupt_database_file_is_named_and_left_alone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    db = home / "posegen.db"
    junk = os.urandom(8192)
    db.write_bytes(junk)
    line = one_line_error(posegen(home, "status"))
    assert str(db) in line and "posegen" in line
    assert db.read_bytes() == junk


def test_read_only_database_says_so(home: Path, sample_dir: Path) -> None:
    """The database's folder is mounted read-only: writes fail with a line that says why."""
    db_dir = db_path(home).parent
    before = db_path(home).read_bytes()
    bind = subprocess.run(["mount", "--bind", str(db_dir), str(db_dir)], capture_output=True)
    if bind.returncode != 0:
        pytest.skip(f"cannot bind-mount here ({bind.stderr.decode().strip()})")
    try:
        ro = subprocess.run(["mount", "-o", "remount,ro,bind", str(db_dir)], capture_output=True)
        assert ro.returncode == 0, ro.stderr
        line = one_line_error(posegen(
            home, "init", "x", "--image", str(sample_dir / "reference.png"),
            "--pose", str(sample_dir / "pose.mp4"), "--hand", str(sample_dir / "hand.mp4"),
            "--prompt", "a woman"))
        assert "read-only" in line.lower() or "permission" in line.lower() or \
            "readonly" in line.lower(), line
        assert str(home) in line
    finally:
        subprocess.run(["umount", "-l", str(db_dir)], check=False)
    assert db_path(home).read_bytes() == before


@contextlib.contextmanager
def small_disk(folder: Path, size: str):
    """A size-limited tmpfs at ``folder`` if root may mount; else None (fault injection)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                              str(folder)], capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.slow
def test_full_disk_while_writing_the_anchor_cache(home: Path, tiny_ckpt: Path,
                                                  reference_run: Path, monkeypatch) -> None:
    """The cache write fails; the error says what to do; resume later gives the same video."""
    import engine.kv_cache as kv_cache
    from sessions.worker import Worker

    monkeypatch.setenv("POSEGEN_HOME", str(home))
    sid = make_session(home, tiny_ckpt, "demo", "--steps", REFERENCE_STEPS)
    store = Store(db_path(home))
    workspace = Path(store.get_session(sid)["workspace"])
    with small_disk(workspace / "cache", "60k") as mounted:
        if not mounted:  # no permission to mount: make the writer fail like a full disk
            calls = {"n": 0}
            real = kv_cache.save_file

            def filling(tensors, path, *a, **k):
                calls["n"] += 1
                if calls["n"] > 3:
                    raise RuntimeError("Error while serializing: I/O error: No space left on "
                                       "device (os error 28)")
                return real(tensors, path, *a, **k)

            monkeypatch.setattr(kv_cache, "save_file", filling)
        assert Worker(sid, "cpu", home).run() == 1
        chunk0 = store.chunks(sid)[0]
        assert chunk0["status"] == "failed"
        assert "disk full" in chunk0["error"] and f"posegen resume {sid}`" in chunk0["error"]
        assert str(workspace / "cache" / "anchor") in chunk0["error"]
        assert not list((workspace / "cache" / "anchor").glob(".*.tmp*")), "temp files left"
        monkeypatch.undo()
    # Space is back: resume finishes, and the result equals an uninterrupted run.
    ok(posegen(home, "resume", str(sid)))
    ok(posegen(home, "wait", str(sid), "--timeout", "180"))
    for i in range(5):
        np.testing.assert_array_equal(load_frames(workspace / f"chunks/{i:03d}/frames.npy"),
                                      load_frames(reference_run / f"chunks/{i:03d}/frames.npy"))


def test_share_steps_and_blocks_are_checked_when_the_session_is_made(home: Path,
                                                                      tiny_ckpt: Path) -> None:
    """Not minutes later in the worker, after the models have loaded."""
    args = ["session", "new", "demo", "--ckpt", str(tiny_ckpt), "--json"]
    line = one_line_error(posegen(home, *args, "--steps", "1", "-s", "0", "2"))
    assert "-s 0 2" in line and "--steps" in line and "-s 0 1" in line
    layers = json.loads((tiny_ckpt / "720p-81f-base" / "model_config.json").read_text())[
        "num_layers"]
    line = one_line_error(posegen(home, *args, "-b", "0", str(layers + 1)))
    assert f"-b 0 {layers + 1}" in line and "model_config.json" in line
    assert Store(db_path(home)).list_sessions() == []


@pytest.mark.parametrize("extra, words", [
    (["--device", "bogus"], ["--device", "cpu, cuda or cuda:N"]),
    (["--cfg", "nan"], ["--cfg nan", "finite"]),
    (["--height", "16000"], ["--height 16000", "4096"]),
])
def test_bad_settings_are_refused_by_session_new(home: Path, tiny_ckpt: Path, extra: list[str],
                                                 words: list[str]) -> None:
    """Issue #14, defect 4: refused at once, with the fix; before they were accepted and
    the session failed (or wrote a black video) minutes later."""
    proc = posegen(home, "session", "new", "demo", "--ckpt", str(tiny_ckpt), *extra)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in proc.stderr
    assert Store(db_path(home)).list_sessions() == []


def test_impossible_session_ids_and_a_home_that_is_a_file(home: Path, tmp_path: Path) -> None:
    for cmd in (["status", str(2**64)], ["logs", "0"], ["retry", "1", "-1"]):
        proc = posegen(home, *cmd)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert "no such" in proc.stderr
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    line = one_line_error(posegen(not_a_folder, "status"))
    assert str(not_a_folder) in line and "POSEGEN_HOME" in line


def test_delete_from_the_cli_with_the_apps_words(home: Path, tiny_ckpt: Path) -> None:
    """Issue #14: every action of the app exists in the CLI, with the same words."""
    from posegen_tui.data import actions

    first = make_session(home, tiny_ckpt, "demo")
    second = make_session(home, tiny_ckpt, "demo")
    assert ok(posegen(home, "session", "delete", str(first))).strip() == \
        f"session {first} deleted (its workspace folder is kept)"
    assert actions.delete(home, "session", second) == \
        f"session {second} deleted (its workspace folder is kept)"
    make_session(home, tiny_ckpt, "demo")
    assert ok(posegen(home, "project", "delete", "demo")).strip() == \
        "project demo deleted (workspace folders are kept)"
    assert Store(db_path(home)).list_projects(include_archived=True) == []
    assert "unknown project" in one_line_error(posegen(home, "project", "delete", "demo"))
    assert "unknown session" in one_line_error(posegen(home, "session", "delete", "99"))


def test_archive_from_the_cli_with_the_apps_words(home: Path, tiny_ckpt: Path) -> None:
    """Issue #14: archive, like delete, is a CLI command with the app's words."""
    from posegen_tui.data import actions

    first = make_session(home, tiny_ckpt, "demo")
    second = make_session(home, tiny_ckpt, "demo")
    assert ok(posegen(home, "session", "archive", str(first))).strip() == \
        f"session {first} archived"
    assert actions.archive(home, "session", second) == f"session {second} archived"
    listed = {s["id"] for s in Store(db_path(home)).list_sessions()}
    assert first not in listed and second not in listed
    assert ok(posegen(home, "session", "archive", str(first), "--restore")).strip() == \
        f"session {first} restored"
    pid = Store(db_path(home)).get_project("demo")["id"]
    assert ok(posegen(home, "project", "archive", "demo")).strip() == f"project {pid} archived"
    assert Store(db_path(home)).list_projects() == []


def test_a_new_session_counts_its_planned_chunks_everywhere(home: Path, tiny_ckpt: Path) -> None:
    """Issue #15: an empty session showed 0/?, 0/0 and 0/5 chunks in three places."""
    made = json.loads(ok(posegen(home, "session", "new", "demo", "--ckpt", str(tiny_ckpt),
                                 "--json", *TINY_ARGS)))
    sid, planned = made["id"], made["chunks"]
    assert planned > 1
    row = next(s for s in Store(db_path(home)).list_sessions() if s["id"] == sid)
    assert (row["chunks_done"], row["chunks_total"]) == (0, planned)
