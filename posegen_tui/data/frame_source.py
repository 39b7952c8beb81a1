"""Frames of a video one at a time, for the player: never the whole video in memory.

A chunk plays from its frames.npy, memory-mapped as the thumbnails read it (lossless,
any frame at once); the merged video from its mp4, decoded in order with cv2. Both cut
frames down to the height the player can show. Opened and read on a worker thread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from posegen_tui.data.chunk_files import open_frames, shrink

DEFAULT_FPS = 16.0  # PoseGen's rate, when a chunk's run.json does not say
SKIP_MAX = 48  # a jump this far ahead is decoded through; further, or back, seeks


@dataclass(frozen=True)
class PlayTarget:
    path: Path  # frames.npy of a chunk, or the merged mp4
    label: str  # "chunk 3" or "merged video"
    run_file: Path | None = None  # a chunk's run.json: its fps


class FrameSource(Protocol):
    frames: int
    fps: float

    def read(self, i: int) -> np.ndarray | None:
        """Frame ``i`` as H x W x 3 RGB uint8; None past the end."""
        ...

    def close(self) -> None: ...


class NpyFrames:
    def __init__(self, path: Path, fps: float, max_px: int) -> None:
        self.arr = open_frames(path)
        self.frames, self.fps, self.max_px = int(self.arr.shape[0]), fps, max_px

    def read(self, i: int) -> np.ndarray | None:
        return shrink(self.arr[i], self.max_px) if 0 <= i < self.frames else None

    def close(self) -> None:
        del self.arr  # the mmap goes with its last reference


class Mp4Frames:
    def __init__(self, path: Path, max_px: int) -> None:
        import cv2  # a dependency of the engine; late, to keep the app's start quick

        self.cv2: Any = cv2
        self.cap = cv2.VideoCapture(str(path))
        if not self.cap.isOpened():
            raise ValueError(f"{path.name}: cannot open as a video")
        self.frames = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0) or DEFAULT_FPS
        self.max_px = max_px
        self.next = 0  # the frame the next cap.read() returns

    def read(self, i: int) -> np.ndarray | None:
        if not 0 <= i - self.next <= SKIP_MAX:
            self.cap.set(self.cv2.CAP_PROP_POS_FRAMES, i)
            self.next = i
        while self.next < i:  # grab() skips without converting the picture
            self.cap.grab()
            self.next += 1
        ok, bgr = self.cap.read()
        if not ok:
            return None
        self.next = i + 1
        return shrink(bgr[..., ::-1], self.max_px)

    def close(self) -> None:
        self.cap.release()


def chunk_fps(run_file: Path | None) -> float:
    """The rate the engine wrote the chunk's mp4 at (the pose clip's), from run.json."""
    try:
        fps = float(json.loads(run_file.read_text())["fps"]) if run_file else 0.0
    except (OSError, ValueError, KeyError, TypeError):
        fps = 0.0
    return fps if fps > 0 else DEFAULT_FPS


def open_source(target: PlayTarget, max_px: int) -> FrameSource:
    if target.path.suffix == ".npy":
        return NpyFrames(target.path, chunk_fps(target.run_file), max_px)
    return Mp4Frames(target.path, max_px)
