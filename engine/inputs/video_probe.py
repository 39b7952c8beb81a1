"""Exact facts about a video (frame count, size, fps) and frame-by-frame reading.

Container frame counts can be wrong (variable frame rate, damaged files), and a
mismatch of one frame between the driving video and its Sapiens outputs matters,
so frames are counted by decoding. Frames are streamed: nothing holds a whole clip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engine.inputs.errors import InputError

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    frames: int
    fps: float
    height: int
    width: int

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width


def _open(path: Path, what: str) -> cv2.VideoCapture:
    if not path.is_file():
        raise InputError(f"{path}: {what} not found; check the path")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the {what} file is empty; export or copy it again")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise InputError(f"{path}: cannot open the {what}; re-encode it as H.264 .mp4 "
                         "(e.g. ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p OUT.mp4)")
    return cap


def probe_video(path: PathLike, what: str = "video") -> VideoInfo:
    """Count the decodable frames and read fps and size; errors name the file."""
    path = Path(path)
    cap = _open(path, what)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        ok, first = cap.read()
        count = 0
        if ok:
            count = 1
            while cap.grab():
                count += 1
    finally:
        cap.release()
    if count == 0:
        raise InputError(f"{path}: the {what} has no decodable frames; re-encode it as H.264 "
                         ".mp4")
    if fps <= 0:
        raise InputError(f"{path}: the {what} has no frame rate; re-encode it with one "
                         "(ffmpeg -r)")
    return VideoInfo(path, count, fps, int(first.shape[0]), int(first.shape[1]))


def iter_frames(path: PathLike, what: str = "video") -> Iterator[np.ndarray]:
    """Yield the frames of ``path`` one at a time as uint8 H x W x 3 RGB."""
    cap = _open(Path(path), what)
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()
