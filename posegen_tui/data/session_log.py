"""A session's whole story for the log screen: its events, then its workers' log files.

Read off the UI thread. Log files are read from a remembered offset, so following a
long run reads only what was appended since the last look.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from posegen_tui.data.store_access import opened
from sessions.control import event_line, worker_logs

MAX_LINES = 20_000  # kept in the screen; older lines drop off the top
FIRST_READ_BYTES = 4 << 20  # a first look reads at most the last 4 MB of each log


@dataclass
class LogCursor:
    """Where the last read stopped: the newest event id and each file's offset."""

    event_id: int = 0
    offsets: dict[str, int] = field(default_factory=dict)


def read_new(home: Path, session_id: int, cursor: LogCursor) -> list[str]:
    """Lines that appeared since ``cursor`` (which moves on): events, then log lines with
    a header per file the first time it is seen."""
    with opened(home) as store:
        events = store.events(session_id, after_id=cursor.event_id, limit=MAX_LINES)
    lines = [event_line(e) for e in events]
    if events:
        cursor.event_id = events[-1]["id"]
    for path in worker_logs(session_id, home):
        lines += _new_file_lines(path, cursor)
    return lines


def _new_file_lines(path: Path, cursor: LogCursor) -> list[str]:
    key = str(path)
    try:
        size = path.stat().st_size
    except OSError:
        return []
    first = key not in cursor.offsets
    start = max(0, size - FIRST_READ_BYTES) if first else cursor.offsets[key]
    if size < start:  # the file was replaced: read it again from the top
        start = 0
    if size == start and not first:
        return []
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(size - start)
    # Keep a line that is still being written for the next read.
    end = data.rfind(b"\n") + 1
    cursor.offsets[key] = start + end
    text = data[:end].decode("utf-8", errors="replace").splitlines()
    if first and start > 0 and text:
        text = text[1:]  # cut in the middle
    return ([f"--- {path.name}"] if first else []) + text
