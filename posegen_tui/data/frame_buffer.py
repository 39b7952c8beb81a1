"""Decode ahead of the playhead on a worker thread, a bounded number of frames.

The UI thread says where the playhead is (`want`) and takes what is ready (`get`);
the decoder fills the next `ahead` frames (wrapping: the player loops) and drops
frames outside the window, keeping `behind` for stepping back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from posegen_tui.data.frame_source import FrameSource

AHEAD = 24
BEHIND = 8


class FrameBuffer:
    def __init__(self, opener: Callable[[], FrameSource], ahead: int = AHEAD,
                 behind: int = BEHIND) -> None:
        self.opener, self.ahead, self.behind = opener, ahead, behind
        self.frames = 0  # known once opened (0: not yet)
        self.fps = 0.0
        self.error = ""
        self._want = 0
        self._decoded: dict[int, np.ndarray] = {}
        self._closed = False
        self._cond = threading.Condition()

    # -- the UI thread -----------------------------------------------------------------

    def want(self, i: int) -> None:
        with self._cond:
            if i != self._want:
                self._want = i
                self._cond.notify()

    def get(self, i: int) -> np.ndarray | None:
        with self._cond:
            return self._decoded.get(i)

    def held(self) -> int:
        with self._cond:
            return len(self._decoded)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    # -- the worker thread -------------------------------------------------------------

    def run(self) -> None:
        """Open the source, then decode until closed. Errors end up in ``error``."""
        source: FrameSource | None = None
        try:
            source = self.opener()
            if source.frames <= 0:
                raise ValueError("the video has no frames")
            with self._cond:
                self.frames, self.fps = source.frames, source.fps
            self._decode(source)
        except Exception as e:  # shown on the player's status line
            self.error = str(e) or type(e).__name__
        finally:
            if source is not None:
                source.close()

    def _decode(self, source: FrameSource) -> None:
        while True:
            with self._cond:
                todo = self._missing()
                while not self._closed and todo is None:
                    self._cond.wait()
                    todo = self._missing()
                if self._closed or todo is None:
                    return
            frame = source.read(todo)  # outside the lock: the UI never waits on a decode
            with self._cond:
                if frame is None:  # the container promised more frames than it holds
                    self.frames = max(1, todo)
                    self._want %= self.frames
                else:
                    self._decoded[todo] = frame
                self._evict()

    def _missing(self) -> int | None:
        for k in range(min(self.ahead, self.frames)):
            i = (self._want + k) % self.frames
            if i not in self._decoded:
                return i
        return None

    def _evict(self) -> None:
        n, want = self.frames, self._want
        for i in list(self._decoded):
            if i >= n or not ((i - want) % n < self.ahead or (want - i) % n <= self.behind):
                del self._decoded[i]
