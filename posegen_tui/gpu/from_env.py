"""The env switch that picks a `GpuSource`.

`POSEGEN_TUI_GPU=nvml` (default) reads real devices; `fake` gives canned
numbers and `none` behaves like a machine without NVML, so tests, snapshots
and tmux runs are deterministic.
"""

from __future__ import annotations

import os

from posegen_tui.gpu.fake import FakeGpuSource, NoGpuSource
from posegen_tui.gpu.nvml import NvmlSource
from posegen_tui.gpu.source import GpuSource

ENV = "POSEGEN_TUI_GPU"


def source_from_env(value: str | None = None) -> GpuSource:
    kind = (value if value is not None else os.environ.get(ENV, "nvml")).strip().lower()
    if kind == "fake":
        return FakeGpuSource()
    if kind == "none":
        return NoGpuSource()
    return NvmlSource()
