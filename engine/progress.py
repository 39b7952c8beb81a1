"""Progress events of a generation, and an ETA from the steps measured so far."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProgressEvent:
    # job_start | chunk_start | phase | compiled | notice | step | chunk_done | chunk_skipped
    # | merge_done
    kind: str
    chunk: int = -1
    role: str = ""
    step: int = 0
    steps: int = 0
    chunks_done: int = 0
    chunks_total: int = 0
    seconds_per_step: float | None = None
    eta_chunk: float | None = None
    eta_total: float | None = None
    message: str = ""


ProgressCallback = Callable[[ProgressEvent], None]


class PhaseClock:
    """Seconds spent in each named phase of a chunk (loading, encoding, sampling, ...).

    ``on_start`` hears each phase's name as it begins, so a display can say what is
    happening between sampling steps; ``sync`` (e.g. ``torch.cuda.synchronize``) runs
    at each phase's end so asynchronous device work is charged to the phase that
    queued it.
    """

    def __init__(self, on_start: Callable[[str], None] = lambda name: None,
                 sync: Callable[[], None] | None = None,
                 seconds: dict[str, float] | None = None) -> None:
        self.seconds: dict[str, float] = {} if seconds is None else seconds  # added into
        self._on_start = on_start
        self._sync = sync

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._on_start(name)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self._sync is not None:
                self._sync()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0


@dataclass
class EtaClock:
    """Mean seconds per step over the steps run in this process (resumed ones excluded),
    and the rest of each chunk (loading, encoding, decoding, writing) as measured."""

    total_steps: int
    done_steps: int = 0
    _measured: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    chunks_left: int = 0
    _overheads: list[float] = field(default_factory=list)

    def chunk_done(self, seconds: float, sampling_seconds: float) -> None:
        """A chunk finished in ``seconds``, of which ``sampling_seconds`` were steps."""
        self._overheads.append(max(seconds - sampling_seconds, 0.0))
        self.chunks_left = max(self.chunks_left - 1, 0)

    def eta_total(self) -> float | None:
        """The steps left at the measured rate, plus each chunk's measured rest: whole for
        the chunks not started, half for the one running (somewhere in between)."""
        sampling = self.eta(self.remaining)
        if sampling is None:
            return None
        if not self._overheads or not self.chunks_left:
            return sampling
        rest = sum(self._overheads) / len(self._overheads)
        return sampling + rest * (self.chunks_left - 0.5)

    def step(self, seconds: float) -> None:
        self._measured.append(seconds)
        self.done_steps += 1

    def skip(self, steps: int) -> None:
        self.done_steps += steps

    @property
    def seconds_per_step(self) -> float | None:
        recent = self._measured[-20:]
        return sum(recent) / len(recent) if recent else None

    def eta(self, remaining_steps: int) -> float | None:
        sps = self.seconds_per_step
        return None if sps is None else sps * remaining_steps

    @property
    def remaining(self) -> int:
        return max(self.total_steps - self.done_steps, 0)


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
