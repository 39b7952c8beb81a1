"""Progress output of `posegen generate`: one live line on a terminal, plain lines in logs."""

from __future__ import annotations

import shutil
import sys
from typing import TextIO

from engine.progress import ProgressEvent, format_seconds


class ProgressPrinter:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self._line_open = False
        self.where = ""  # the chunk and step (or phase) last reported

    def stopped_message(self) -> str:
        """What Ctrl-C says: where it stopped, and that the same command resumes."""
        at = f" at {self.where}" if self.where else ""
        return (f"stopped{at}; finished chunks and the last saved step are kept: re-run the "
                "same command to resume")

    def __call__(self, e: ProgressEvent) -> None:
        # Chunks are named by index (0 = first), as in --anchor and `posegen retry`.
        name = f"chunk {e.chunk} of 0-{e.chunks_total - 1} ({e.role})"
        if e.kind in ("step", "phase", "chunk_start"):
            self.where = (f"chunk {e.chunk} step {e.step}/{e.steps}" if e.kind == "step"
                          else f"chunk {e.chunk} ({e.message or 'starting'})")
        if e.kind == "step":
            sps = f"{e.seconds_per_step:.2f} s/step" if e.seconds_per_step else "-- s/step"
            # What matters first: a narrow terminal cuts the end of the line.
            line = (f"[{e.chunks_done}/{e.chunks_total}] chunk {e.chunk} ({e.role}) "
                    f"step {e.step}/{e.steps} ETA {format_seconds(e.eta_chunk)}, all "
                    f"{format_seconds(e.eta_total)} {_bar(e.step, e.steps)} {sps}")
            self._write(line, live=True)
        elif e.kind == "chunk_start":
            self._write(f"{name} started")
        elif e.kind == "phase":  # loading, encoding, sampling, decoding, writing
            self._write(f"[{e.chunks_done}/{e.chunks_total} done] {name} {e.message}...",
                        live=True)
        elif e.kind in ("compiled", "notice"):
            self._write(f"{name}: {e.message}")
        elif e.kind == "chunk_done":
            self._write(f"{name} done [{e.chunks_done}/{e.chunks_total} chunks]")
        elif e.kind == "chunk_skipped":
            self._write(f"{name} already done, kept")
        elif e.message:
            self._write(e.message if e.kind != "merge_done" else f"merged: {e.message}")

    def _write(self, text: str, live: bool = False) -> None:
        if self.live and live:
            # One row, never wrapped: "\r" returns to the start of the last row only, so a
            # wrapped line would leave a row behind at every step.
            width = shutil.get_terminal_size((80, 24)).columns
            self.stream.write("\r\033[K" + text[:max(width - 1, 20)])
            self._line_open = True
        else:
            if self._line_open:
                self.stream.write("\n")
                self._line_open = False
            self.stream.write(text + "\n")
        self.stream.flush()


def _bar(done: int, total: int, width: int = 10) -> str:
    filled = int(width * done / total) if total else 0
    return "[" + "#" * filled + "." * (width - filled) + "]"
