"""The session ETA, one formula for `posegen status` and the app."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple


class ChunkTimes(NamedTuple):
    steps: int | None
    step: int | None
    status: str
    seconds_per_step: float | None
    seconds: float | None  # the whole chunk, once done


def session_eta(chunks: Iterable[ChunkTimes | tuple], live_workers: int) -> float | None:
    """Seconds left, from what this session has measured, shared by the live workers.

    Sampling: the mean seconds per step times the steps not yet run. The rest of a chunk
    (loading, encoding, decoding, writing: seconds on a tiny model, ~5 % at full size) is
    each done chunk's time beyond its steps; every chunk not started pays it, a running
    one half of it (it is somewhere in between). None until a step has been measured.
    """
    rows = [ChunkTimes(*c) for c in chunks]
    rates = [c.seconds_per_step for c in rows if c.seconds_per_step]
    if not rates:
        return None
    rate = sum(rates) / len(rates)
    extras = [max(c.seconds - (c.steps or 0) * c.seconds_per_step, 0.0) for c in rows
              if c.status == "done" and c.seconds and c.seconds_per_step]
    extra = sum(extras) / len(extras) if extras else 0.0
    left = 0.0
    for c in rows:
        if c.status == "done":
            continue
        left += max((c.steps or 0) - (c.step or 0), 0) * rate
        left += extra * (0.5 if c.status == "running" else 1.0)
    return left / max(1, live_workers)
