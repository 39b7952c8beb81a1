"""`posegen cache --clear` frees only what no unfinished chunk or merge still needs."""

from __future__ import annotations

from pathlib import Path

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
