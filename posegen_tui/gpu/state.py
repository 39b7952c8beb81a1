"""What the GPU panel draws: the latest readings, their history, and the workers' own numbers."""

from __future__ import annotations

from dataclasses import dataclass, field

from posegen_tui.data.loaders import WorkerUse
from posegen_tui.gpu.history import GpuHistory
from posegen_tui.gpu.source import GpuReading


@dataclass
class GpuState:
    readings: list[GpuReading] = field(default_factory=list)
    unavailable: str = ""
    history: GpuHistory = field(default_factory=GpuHistory)
    workers: list[WorkerUse] = field(default_factory=list)
    loaded: bool = False

    def reading(self, index: int) -> GpuReading | None:
        return next((r for r in self.readings if r.index == index), None)
