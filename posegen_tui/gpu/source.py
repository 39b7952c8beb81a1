"""The `GpuSource` protocol and the env switch that picks one.

`POSEGEN_TUI_GPU=nvml` (default) reads real devices; `fake` gives canned
numbers and `none` behaves like a machine without NVML, so tests, snapshots
and tmux runs are deterministic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

ENV = "POSEGEN_TUI_GPU"


@dataclass(frozen=True)
class GpuReading:
    """One device at one moment; any sensor may be None (N/A)."""

    index: int
    name: str
    used: int | None
    total: int | None
    util: float | None
    temp: float | None


@runtime_checkable
class GpuSource(Protocol):
    def unavailable(self) -> str:
        """Why there is no GPU data ('' when readings work)."""
        ...

    def read(self) -> list[GpuReading]:
        """Every device now; [] when unavailable. Never raises."""
        ...


def source_from_env(value: str | None = None) -> GpuSource:
    from posegen_tui.gpu.fake import FakeGpuSource, NoGpuSource
    from posegen_tui.gpu.nvml import NvmlSource

    kind = (value if value is not None else os.environ.get(ENV, "nvml")).strip().lower()
    if kind == "fake":
        return FakeGpuSource()
    if kind == "none":
        return NoGpuSource()
    return NvmlSource()
