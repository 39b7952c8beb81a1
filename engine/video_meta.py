"""A video's frame count, rate and size from its container: cv2 only, no torch.

The CLI's `init` and `session new` and the app's forms ask it, so creating a
session never loads the engine.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2

from engine.errors import MediaError

PathLike = str | os.PathLike[str]


def video_info(path: PathLike) -> tuple[int, float, int, int]:
    """(frames, fps, height, width) from the container, without decoding the video."""
    path = _existing(path, "video")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise MediaError(f"{path}: cannot open as a video; re-encode it as H.264 .mp4")
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        if count <= 0:
            # Some containers do not store a count; grabbing skips the pixel conversion.
            count = 0
            while cap.grab():
                count += 1
    finally:
        cap.release()
    if count <= 0:
        raise MediaError(f"{path}: no decodable frames; check the file or re-encode it as .mp4")
    return count, fps, height, width


def _existing(path: PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: {what} file not found; check the path")
    return path
