"""What the GPU panel draws: the latest readings, their history, and the workers' own numbers."""

from __future__ import annotations

from dataclasses import dataclass, field

from posegen_tui.data.loaders import WorkerUse
from posegen_tui.gpu.history import GpuHistory
from posegen_tui.gpu.source import GpuReading


@dataclass(frozen=True)
class GpuTick:
    """One poll, read on a worker thread."""

    readings: list[GpuReading]
    unavailable: str
    workers: list[WorkerUse]
    samples: list[dict]  # this host's new rows of `Store.gpu_samples`
    nodes: list[dict]  # `Store.latest_gpu_samples`: every host's devices
    now: float
    host: str  # this host's name, as workers and samples record it


@dataclass
class GpuState:
    readings: list[GpuReading] = field(default_factory=list)
    unavailable: str = ""
    history: GpuHistory = field(default_factory=GpuHistory)
    workers: list[WorkerUse] = field(default_factory=list)
    nodes: list[dict] = field(default_factory=list)
    host: str = ""
    read_at: float = 0.0
    loaded: bool = False

    def reading(self, index: int) -> GpuReading | None:
        return next((r for r in self.readings if r.index == index), None)

    @property
    def multi_node(self) -> bool:
        """Samples come from several hosts (a cluster): show memory per node."""
        return len({n["host"] for n in self.nodes}) > 1
