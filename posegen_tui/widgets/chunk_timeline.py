"""Every chunk on a frame axis: base chunks on one row, cond chunks below, overlaps visible.

Status reads from glyphs as well as colour (NO_COLOR terminals): # done,
> running (filled by steps done), - ready, . pending, ! failed, ~ stale; A marks
the anchor. The selected chunk is reversed and underlined with ^ marks.
"""

from __future__ import annotations

from rich.text import Text
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

from posegen_tui.data.chunk import Chunk
from posegen_tui.widgets.timeline_text import timeline_text


class ChunkTimeline(Widget, can_focus=True):
    class Selected(Message):
        def __init__(self, idx: int) -> None:
            super().__init__()
            self.idx = idx

    selected: reactive[int | None] = reactive(None)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.chunks: list[Chunk] = []
        self.now = 0.0
        self.follow = True  # select the running chunk until the user picks one

    def show(self, chunks: list[Chunk], now: float) -> None:
        self.chunks, self.now = chunks, now
        done = sum(c.status == "done" for c in chunks if not c.planned)
        self.border_title = f"Chunks {done}/{len(chunks)} done"
        running = [c.idx for c in chunks if c.status == "running"]
        if self.follow and running:
            self.selected = running[0]
        elif chunks and self.selected not in {c.idx for c in chunks}:
            self.selected = chunks[0].idx
        self.refresh()

    def move(self, delta: int) -> None:
        self.follow = False
        idxs = [c.idx for c in self.chunks]
        if not idxs:
            return
        pos = idxs.index(self.selected) if self.selected in idxs else 0
        self.selected = idxs[max(0, min(len(idxs) - 1, pos + delta))]

    def jump(self, last: bool) -> None:
        self.follow = False
        if self.chunks:
            self.selected = self.chunks[-1 if last else 0].idx

    def watch_selected(self, idx: int | None) -> None:
        if idx is not None:
            self.post_message(self.Selected(idx))

    def render(self) -> Text:
        return timeline_text(self.chunks, self.content_size.width or 80, self.selected,
                             self.now)
