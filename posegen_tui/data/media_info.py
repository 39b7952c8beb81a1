"""Frame counts of the pose clip, to show a created session's chunk plan before any worker ran."""

from __future__ import annotations

import functools
from pathlib import Path


@functools.lru_cache(maxsize=64)
def _count(path: str, mtime_ns: int) -> int | None:
    import cv2  # already a dependency of the engine; imported late to keep startup quick

    cap = cv2.VideoCapture(path)
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    finally:
        cap.release()
    return n or None


def frame_count(path: str | Path) -> int | None:
    try:
        return _count(str(path), Path(path).stat().st_mtime_ns)
    except OSError:
        return None
