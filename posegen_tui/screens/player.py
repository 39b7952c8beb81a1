"""`o` on a session: play a chunk's frames or the merged video at its frame rate.

A worker thread decodes ahead of the playhead (`FrameBuffer`, a bounded window);
a timer asks the playhead (driven by an injectable clock) which frame is due and
shows it once decoded. Space pauses, left/right step a frame, escape goes back.
"""

from __future__ import annotations

import time
from functools import partial

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static

from posegen_tui.app_protocol import UsesApp
from posegen_tui.data.frame_buffer import FrameBuffer
from posegen_tui.data.frame_source import PlayTarget, open_source
from posegen_tui.data.playhead import Clock, Playhead
from posegen_tui.widgets.video_frame import frame_widget

TICK_S = 0.02  # how often the due frame is looked up; the clock, not this, sets the rate
PICTURE_PX_PER_ROW = 20  # sixel/kitty: about a cell's height in pixels


class PlayerScreen(UsesApp, Screen[None]):
    BINDINGS = [
        Binding("space", "play_pause", "play/pause"),
        Binding("left", "step(-1)", "frame back", key_display="←"),
        Binding("right", "step(1)", "frame on", key_display="→"),
        Binding("escape", "back", "back"),
    ]

    def __init__(self, target: PlayTarget, clock: Clock = time.monotonic) -> None:
        super().__init__()
        self.target, self.clock = target, clock
        self.playhead: Playhead | None = None
        self.shown: int | None = None  # the frame on screen
        self.buffer: FrameBuffer | None = None
        self.status = ""  # the counter line as shown (tests read it)

    def compose(self) -> ComposeResult:
        yield Static(id="player-status", markup=False)
        yield frame_widget(self.papp.graphics, id="player-frame")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        rows = max(1, self.app.size.height)
        max_px = 2 * rows if self.papp.graphics == "halfcell" else PICTURE_PX_PER_ROW * rows
        self.buffer = FrameBuffer(partial(open_source, self.target, max_px))
        self.run_worker(self.buffer.run, name=f"player {self.target.label}", group="player",
                        thread=True, exit_on_error=False)
        self.set_interval(TICK_S, self.tick)
        self.tick()

    def on_unmount(self) -> None:
        if self.buffer is not None:
            self.buffer.close()

    def tick(self) -> None:
        buf = self.buffer
        if buf is None:
            return
        if buf.error:
            self._say(f"{self.target.label}: cannot play: {buf.error}")
            return
        if buf.frames == 0:
            self._say(f"{self.target.label}: opening…")
            return
        if self.playhead is None:  # the clock starts with the first frame known
            self.playhead = Playhead(self.clock, buf.fps, buf.frames)
        head = self.playhead
        head.set_frames(buf.frames)
        due = head.position()
        buf.want(due)
        frame = buf.get(due) if due != self.shown else None
        if frame is not None:
            self.query_one("#player-frame").show(frame)  # type: ignore[attr-defined]
            self.shown = due
        self._say(self._counter(head, due))

    def _counter(self, head: Playhead, due: int) -> str:
        frame = "-" if self.shown is None else str(self.shown + 1)
        state = "playing" if head.playing else "paused"
        if self.shown != due:
            state += ", decoding…"
        return f"frame {frame}/{head.frames}, {head.fps:.4g} fps, {self.target.label} · {state}"

    def _say(self, text: str) -> None:
        if self.status != text:
            self.status = text
            self.query_one("#player-status", Static).update(text)

    def action_play_pause(self) -> None:
        if self.playhead is not None:
            self.playhead.toggle()
            self.tick()

    def action_step(self, delta: int) -> None:
        if self.playhead is not None:
            self.playhead.step(delta)
            self.tick()

    def action_back(self) -> None:
        self.app.pop_screen()
