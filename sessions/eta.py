"""The session ETA, one formula for `posegen status` and the app."""

from __future__ import annotations

from collections.abc import Iterable


def session_eta(chunks: Iterable[tuple[int | None, int | None, str, float | None]],
                live_workers: int) -> float | None:
    """Seconds left: the mean seconds per step of the chunks measured so far, times the
    steps not yet run, shared by the live workers (at least one).

    ``chunks``: (steps, step, status, seconds_per_step) of every chunk. None until a
    chunk has measured a step.
    """
    rows = list(chunks)
    rates = [sps for _, _, _, sps in rows if sps]
    if not rates:
        return None
    left = sum(max((steps or 0) - (step or 0), 0) for steps, step, status, _ in rows
               if status != "done")
    return sum(rates) / len(rates) * left / max(1, live_workers)
