"""The session ETA, one formula for `posegen status` and the app."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from statistics import mean
from typing import Any, NamedTuple

from sessions.store import Store


class ChunkTimes(NamedTuple):
    steps: int | None
    step: int | None
    status: str
    seconds_per_step: float | None
    seconds: float | None  # the whole chunk, once done
    role: str = ""  # anchor | base | cond: an anchor step also writes the K/V cache


def session_eta(chunks: Iterable[ChunkTimes | tuple], live_workers: int,
                history: Sequence[ChunkTimes | tuple] = ()) -> float | None:
    """Seconds left, from what this session has measured, shared by the live workers.

    Sampling: each chunk's steps not yet run times the seconds per step measured for its
    kind (anchor, base, cond), or for any kind while its own is not measured yet. The
    rest of a chunk (loading, encoding, decoding, writing: seconds on a tiny model, ~5 %
    at full size) is each done chunk's time beyond its steps; every chunk not started
    pays it, a running one half of it (it is somewhere in between).

    Before this session has measured a step, ``history`` stands in: done chunks of this
    machine's earlier sessions at the same size (`Store.past_chunk_times`). None while
    there is neither.
    """
    rows = [ChunkTimes(*c) for c in chunks]
    basis = [c for c in rows if c.seconds_per_step] or [ChunkTimes(*h) for h in history]
    rates = [c.seconds_per_step for c in basis if c.seconds_per_step]
    if not rates:
        return None
    rate = mean(rates)
    by_role = {role: mean(c.seconds_per_step for c in basis
                          if c.role == role and c.seconds_per_step)
               for role in {c.role for c in basis if c.role and c.seconds_per_step}}
    done = [c for c in rows if c.status == "done" and c.seconds and c.seconds_per_step] or \
        [c for c in (ChunkTimes(*h) for h in history)
         if c.status == "done" and c.seconds and c.seconds_per_step]
    extras = [max((c.seconds or 0.0) - (c.steps or 0) * (c.seconds_per_step or 0.0), 0.0)
              for c in done]
    extra = mean(extras) if extras else 0.0
    left = 0.0
    for c in rows:
        if c.status == "done":
            continue
        left += max((c.steps or 0) - (c.step or 0), 0) * by_role.get(c.role, rate)
        left += extra * (0.5 if c.status == "running" else 1.0)
    return left / max(1, live_workers)


def eta_of(store: Store, session_id: int, chunks: list[dict[str, Any]],
           live_workers: int) -> float | None:
    """`session_eta` for stored chunk rows, with this machine's history as the fallback."""
    rows = [(c["steps"], c["step"], c["status"], c["seconds_per_step"], c["seconds"],
             c["role"]) for c in chunks]
    history = [(h["steps"], h["steps"], "done", h["seconds_per_step"], h["seconds"], h["role"])
               for h in store.past_chunk_times(session_id)]
    return session_eta(rows, live_workers, history)
