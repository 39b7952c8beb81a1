"""`posegen cache --clear` frees only what no unfinished chunk or merge still needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from engine.atomic import leftover_temps
from engine.workspace import clearable, disk_usage


def _touch(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


def _workspace(root: Path) -> Path:
    _touch(root / "cache/anchor/kv_s000_b002_pos.safetensors", 100)
    _touch(root / "cache/anchor/manifest.json", 10)
    _touch(root / "conditions.safetensors", 50)
    for i in range(5):
        _touch(root / f"chunks/{i:03d}/frames.npy", 30)
        _touch(root / f"chunks/{i:03d}/chunk.mp4", 7)
    _touch(root / "chunks/001/state.safetensors", 20)
    return root


ROLES = {0: "anchor", 1: "cond", 2: "base", 3: "cond", 4: "base"}


def test_disk_usage_by_kind(tmp_path: Path) -> None:
    usage = disk_usage(_workspace(tmp_path))
    assert usage["anchor cache (K/V, maps)"] == 110
    assert usage["chunk frames (lossless)"] == 150
    assert usage["chunk previews (mp4)"] == 35
    assert usage["resume states"] == 20
    assert usage["conditions"] == 50
    assert usage["video"] == 0


def test_anchor_cache_kept_while_a_base_chunk_is_unfinished(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    status = {0: "done", 1: "running", 2: "done", 3: "pending", 4: "ready"}
    files = clearable(ws, {i: (ROLES[i], status[i]) for i in ROLES})
    assert files == []  # base 4 still reads the anchor cache; chunk 1 resumes from its state


def test_cond_chunks_do_not_need_the_anchor_cache(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    status = {0: "done", 1: "running", 2: "done", 3: "pending", 4: "done"}
    files = {p.relative_to(ws).as_posix() for p in
             clearable(ws, {i: (ROLES[i], status[i]) for i in ROLES})}
    assert files == {"cache/anchor/kv_s000_b002_pos.safetensors", "cache/anchor/manifest.json"}


def test_everything_done_frees_cache_conditions_and_leftover_states(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    files = {p.relative_to(ws).as_posix() for p in
             clearable(ws, {i: (ROLES[i], "done") for i in ROLES})}
    assert files == {"cache/anchor/kv_s000_b002_pos.safetensors", "cache/anchor/manifest.json",
                     "conditions.safetensors", "chunks/001/state.safetensors"}
    assert not any("frames.npy" in f for f in files)  # results stay


def _killed_writer(target: Path, size: int) -> None:
    """A process killed inside an atomic write: its temp file stays next to ``target``."""
    code = ("import os, sys\n"
            "from engine.atomic import atomic_path\n"
            "with atomic_path(sys.argv[1], suffix='.mp4') as tmp:\n"
            "    tmp.write_bytes(b'x' * int(sys.argv[2]))\n"
            "    os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code, str(target), str(size)], check=True,
                   cwd=Path(__file__).resolve().parents[1])


def test_temp_files_of_killed_writes_are_found_and_cleared_when_nothing_writes(
        tmp_path: Path) -> None:
    """Issue #14, defect 6: interrupted atomic writes leave temp files (0.8 GB each in a
    full-size anchor cache) that nothing removed."""
    ws = _workspace(tmp_path)
    _killed_writer(ws / "cache/anchor/x_s000_b034_pos.safetensors", 40)
    _killed_writer(ws / "video.mp4", 5)
    _touch(ws / "chunks/000/.notes", 3)  # a user's hidden file is not a temp file
    _touch(ws / "chunks/000/mine.tmp", 3)
    temps = leftover_temps(ws)
    assert len(temps) == 2 and {p.parent for p in temps} == {ws, ws / "cache/anchor"}
    assert disk_usage(ws)["interrupted writes (temp files)"] == 45
    chunks = {i: (ROLES[i], "running") for i in ROLES}
    assert set(temps) <= set(clearable(ws, chunks))
    assert not set(temps) & set(clearable(ws, chunks, writers_running=True))


def test_resume_removes_temp_files_before_workers_start(tmp_path: Path) -> None:
    from sessions.control import _remove_leftover_temps
    from sessions.store import Store

    ws = _workspace(tmp_path / "ws")
    _killed_writer(ws / "chunks/002/frames.npy", 64)
    with Store(tmp_path / "posegen.db") as store:
        pid = store.create_project("p", image="i", pose="p", hand="h", prompt="a man")
        sid = store.create_session(pid, settings={}, seed=0, steps=2, cfg=5.0,
                                   share_steps="0 1", share_blocks="0 1", anchor=0,
                                   budget=None, ckpt="/c", device="cpu", gpus="cpu",
                                   workspace=str(ws))
        _remove_leftover_temps(store, sid)
        assert leftover_temps(ws) == []
        assert (ws / "chunks/002/frames.npy").read_bytes() == b"x" * 30  # the real file
        assert any(e["kind"] == "cleanup" and "1 temp files" in e["message"]
                   for e in store.events(sid))


# -- the Workspace object: the one owner of a job folder's paths ---------------------

def test_workspace_layout_is_the_documented_one(tmp_path: Path) -> None:
    from engine.workspace import Workspace

    ws = Workspace(tmp_path)
    assert ws.chunk_dir(7) == tmp_path / "chunks" / "007"
    assert ws.done_file(7) == tmp_path / "chunks/007/done.json"
    assert ws.frames(7) == tmp_path / "chunks/007/frames.npy"
    assert ws.state(7) == tmp_path / "chunks/007/state.safetensors"
    assert ws.anchor_cache_dir == tmp_path / "cache/anchor"
    assert ws.video == tmp_path / "video.mp4"
    assert ws.run_file == tmp_path / "run.json"


def test_a_chunk_is_done_only_with_its_record_and_its_frames(tmp_path: Path) -> None:
    from engine.workspace import Workspace

    ws = Workspace(tmp_path)
    _touch(ws.frames(1), 3)
    assert not ws.is_done(1)  # frames without done.json: killed before the record
    ws.done_file(1).write_text('{"extra": {"seed": 77}}')
    assert ws.is_done(1) and ws.done_seed(1) == 77
    ws.frames(1).unlink()
    assert not ws.is_done(1)
    assert ws.done_seed(2) is None


def test_invalidate_forgets_results_and_the_video_keeps_the_rest(tmp_path: Path) -> None:
    from engine.workspace import Workspace

    ws = Workspace(_workspace(tmp_path))
    for i in (1, 2):
        ws.done_file(i).write_text("{}")
        _touch(ws.chunk_conditions(i), 4)
    _touch(ws.video, 9)
    ws.invalidate([1])
    assert not ws.done_file(1).exists() and not ws.state(1).exists()
    assert not ws.chunk_conditions(1).exists() and not ws.video.exists()
    assert ws.frames(1).exists()  # overwritten by the new run, never read before
    assert ws.is_done(2) and ws.chunk_conditions(2).exists()


def test_workspace_needs_no_torch() -> None:
    code = ("import sys, engine.workspace; "
            "sys.exit(1 if {'torch', 'cv2', 'numpy'} & set(sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
