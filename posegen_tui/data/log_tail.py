"""The last lines of a growing log file, read from its end (logs can be large)."""

from __future__ import annotations

from pathlib import Path


def tail_lines(path: Path, lines: int = 60, max_bytes: int = 64 * 1024) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return []
    text = data.decode("utf-8", errors="replace").splitlines()
    if size > max_bytes and text:
        text = text[1:]  # the first line was cut in the middle
    return text[-lines:]
