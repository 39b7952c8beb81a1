"""Where each chunk goes on the frame axis: pure arithmetic, so it can be tested alone."""

from __future__ import annotations

from dataclasses import dataclass

from posegen_tui.data.chunk import Chunk

GUTTER = 6  # "base  " / "cond  " row labels


@dataclass(frozen=True)
class Span:
    chunk: Chunk
    row: int  # 0: anchor and base chunks, 1: cond chunks (they overlap both neighbours)
    c0: int  # first column
    c1: int  # one past the last column


@dataclass(frozen=True)
class Layout:
    spans: list[Span]
    total: int  # frames on the axis
    width: int
    ticks: list[tuple[int, int]]  # (column, frame)

    def col(self, frame: float) -> int:
        usable = self.width - GUTTER - 1
        return GUTTER + int(frame * usable / max(self.total, 1))


def _tick_step(total: int, usable: int, room: int = 8) -> int:
    """The smallest 1/2/5 x 10^k frame step whose labels are `room` columns apart."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step * usable / max(total, 1) >= room:
                return m * step
        step *= 10


def layout(chunks: list[Chunk], width: int) -> Layout:
    total = max((c.end for c in chunks), default=1)
    width = max(width, GUTTER + 8)
    base = Layout([], total, width, [])
    spans = []
    for c in chunks:
        c0 = base.col(c.start)
        c1 = max(c0 + 1, base.col(c.end))
        spans.append(Span(c, 1 if c.role == "cond" else 0, c0, c1))
    step = _tick_step(total, width - GUTTER - 1)
    ticks = [(base.col(f), f) for f in range(0, total + 1, step)]
    return Layout(spans, total, width, ticks)
