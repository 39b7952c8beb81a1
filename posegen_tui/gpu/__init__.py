"""GPU readings for the GPU panel: a small source protocol with NVML, fake and no-GPU sources."""

from posegen_tui.gpu.from_env import source_from_env
from posegen_tui.gpu.source import GpuReading, GpuSource

__all__ = ["GpuReading", "GpuSource", "source_from_env"]
