"""`posegen generate`'s progress: one row on a terminal, and a total ETA that counts the
rest of each chunk, not only its steps (issue #15)."""

from __future__ import annotations

import io

import pytest

from engine.cli_progress import ProgressPrinter
from engine.progress import EtaClock, ProgressEvent


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_live_line_never_wraps_an_80_column_terminal(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    out = Terminal()
    printer = ProgressPrinter(out)
    for step in range(1, 26):
        printer(ProgressEvent(kind="step", chunk=17, role="anchor", step=step, steps=25,
                              chunks_done=12, chunks_total=31, seconds_per_step=28.7,
                              eta_chunk=(25 - step) * 28.7, eta_total=21_000.0))
    rows = out.getvalue().split("\r\x1b[K")[1:]
    assert len(rows) == 25 and "\n" not in out.getvalue()
    assert all(len(r) <= 79 for r in rows)
    assert "step 25/25" in rows[-1] and "5:50:00" in rows[-1]


def test_the_total_eta_counts_each_chunks_measured_rest() -> None:
    clock = EtaClock(total_steps=4 * 10, chunks_left=4)
    assert clock.eta_total() is None  # nothing measured yet
    for _ in range(10):
        clock.step(2.0)
    clock.chunk_done(seconds=50.0, sampling_seconds=20.0)  # 30 s of loading, decoding...
    # 30 steps left at 2 s, three chunks left: two whole rests, half of the running one
    assert clock.eta_total() == pytest.approx(30 * 2.0 + 30.0 * 2.5)
    assert clock.eta(clock.remaining) == pytest.approx(60.0)  # the steps alone, as before


def test_ctrl_c_says_where_it_stopped_and_how_to_resume() -> None:
    """Issue #15: Ctrl-C ended `generate` without saying how to go on."""
    printer = ProgressPrinter(Terminal())
    assert "re-run the same command" in printer.stopped_message()
    printer(ProgressEvent(kind="phase", chunk=2, role="base", message="decoding",
                          chunks_done=1, chunks_total=5))
    assert printer.stopped_message().startswith("stopped at chunk 2 (decoding);")
    printer(ProgressEvent(kind="step", chunk=3, role="cond", step=7, steps=25,
                          chunks_done=2, chunks_total=5))
    assert printer.stopped_message().startswith("stopped at chunk 3 step 7/25;")
