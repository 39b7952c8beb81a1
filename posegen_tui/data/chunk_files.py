"""What a chunk left on disk: its files with sizes and a few of its decoded frames."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sessions.control import Workspace

THUMBS = 4
THUMB_MAX_PX = 48  # thumbnails are cut to this height here; the widget scales further


@dataclass(frozen=True)
class ChunkFiles:
    idx: int
    files: list[tuple[str, int]] = field(default_factory=list)  # (name, bytes)
    anchor_cache: tuple[int, int] | None = None  # (files, bytes) of cache/anchor
    frames: int | None = None  # frames in frames.npy
    thumbs: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (frame, H x W x 3)
    problem: str = ""  # why there are no thumbnails


def load_chunk_files(workspace: Workspace | None, idx: int, role: str) -> ChunkFiles:
    if workspace is None:
        return ChunkFiles(idx, problem="session has no workspace yet")
    folder = workspace.chunk_dir(idx)
    files = []
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.is_file():
                files.append((p.name, p.stat().st_size))
    cache = None
    if role == "anchor":
        parts = workspace.anchor_cache_files()
        cache = (len(parts), sum(p.stat().st_size for p in parts))
    npy = workspace.frames(idx)
    if not npy.is_file():
        return ChunkFiles(idx, files, cache, problem="no frames yet (the chunk is not decoded)")
    try:
        st = npy.stat()
        frames, thumbs = _thumbs(str(npy), st.st_mtime_ns, st.st_size)
    except (OSError, ValueError) as e:
        return ChunkFiles(idx, files, cache, problem=f"frames.npy unreadable: {e}")
    return ChunkFiles(idx, files, cache, frames, thumbs)


def open_frames(path: str | Path) -> np.ndarray:
    """A chunk's frames.npy memory-mapped: reading a frame reads only its rows."""
    arr = np.load(path, mmap_mode="r")
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected F x H x W x 3 frames, got shape {arr.shape}")
    return arr


def shrink(frame: np.ndarray, max_px: int) -> np.ndarray:
    """A frame cut to at most ``max_px`` rows by striding (cheap; widgets scale further)."""
    step = max(1, -(-frame.shape[0] // max(1, max_px)))
    return np.ascontiguousarray(frame[::step, ::step, :], dtype=np.uint8)


@functools.lru_cache(maxsize=32)
def _thumbs(path: str, mtime_ns: int, size: int) -> tuple[int, list[tuple[int, np.ndarray]]]:
    """~4 evenly spaced frames, cut down by striding; mmap reads only those rows."""
    arr = open_frames(path)
    n = arr.shape[0]
    picks = sorted({round(i * (n - 1) / max(THUMBS - 1, 1)) for i in range(THUMBS)})
    return n, [(i, shrink(arr[i], THUMB_MAX_PX)) for i in picks]
