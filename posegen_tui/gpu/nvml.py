"""Real devices through NVML. Every NVML error becomes N/A (or 'unavailable'), never a crash."""

from __future__ import annotations

from engine.gpu_info import device_memory, nvml_error
from posegen_tui.gpu.source import GpuReading


class NvmlSource:
    def __init__(self) -> None:
        self._error: str | None = None

    def unavailable(self) -> str:
        if self._error is None:
            reason = nvml_error()
            if not reason and self._count() == 0:
                reason = "NVML found no GPU"
            self._error = reason
        return self._error

    @staticmethod
    def _count() -> int:
        try:
            import pynvml

            return int(pynvml.nvmlDeviceGetCount())
        except Exception:  # any NVML failure means: no devices to show
            return 0

    def read(self) -> list[GpuReading]:
        if self.unavailable():
            return []
        readings = []
        for i in range(self._count()):
            mem = device_memory(i)
            if mem is None:  # a device that stopped answering: keep its row, numbers N/A
                readings.append(GpuReading(i, f"GPU {i}", None, None, None, None))
                continue
            readings.append(GpuReading(mem.index, mem.name, mem.used, mem.total,
                                       mem.util, mem.temp))
        return readings
