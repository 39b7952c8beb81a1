"""Which frame is due, from a clock: the player's time base, free of any UI.

The clock is injected (``time.monotonic`` by default) so a test moves time by hand.
Playing, the frame is the one the clock has reached since the last start, looping;
paused, it stays put, and steps move it by one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

Clock = Callable[[], float]


class Playhead:
    def __init__(self, clock: Clock, fps: float, frames: int) -> None:
        self.clock, self.fps, self.frames = clock, fps, max(1, frames)
        self.playing = True
        self._t0 = clock()
        self._frame0 = 0

    def position(self) -> int:
        if not self.playing:
            return self._frame0
        # The epsilon keeps 0.5 s x 16 fps at frame 8, not 7.999...
        ahead = math.floor((self.clock() - self._t0) * self.fps + 1e-6)
        return (self._frame0 + max(0, ahead)) % self.frames

    def toggle(self) -> None:
        self._frame0 = self.position()
        self._t0 = self.clock()
        self.playing = not self.playing

    def step(self, delta: int) -> None:
        """One frame on or back (wrapping), paused."""
        self._frame0 = (self.position() + delta) % self.frames
        self.playing = False

    def set_frames(self, frames: int) -> None:
        """The video turned out shorter than its header said."""
        if frames != self.frames:
            self._frame0, self._t0 = self.position() % max(1, frames), self.clock()
            self.frames = max(1, frames)
