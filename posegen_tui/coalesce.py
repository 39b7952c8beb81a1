"""Apply at most a few snapshots per second; a newer one replaces a pending older one."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

from textual.message_pump import MessagePump

T = TypeVar("T")


class Coalescer(Generic[T]):
    def __init__(self, node: MessagePump, apply: Callable[[T], None],
                 min_interval: float = 0.25) -> None:
        self.node = node
        self.apply = apply
        self.min_interval = min_interval
        self._pending: T | None = None
        self._scheduled = False
        self._last = 0.0  # monotonic: tests freeze time.time, not this

    def push(self, value: T) -> None:
        self._pending = value
        if self._scheduled:
            return
        wait = self._last + self.min_interval - time.monotonic()
        if wait <= 0:
            self._flush()
        else:
            self._scheduled = True
            self.node.set_timer(wait, self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        value, self._pending = self._pending, None
        if value is None:
            return
        self._last = time.monotonic()
        self.apply(value)
