"""Deterministic stand-ins for NVML: canned devices, or no GPU at all."""

from __future__ import annotations

from posegen_tui.gpu.source import GpuReading

GIB = 2**30


class FakeGpuSource:
    """Two devices with fixed numbers: a busy H100 and an idle one."""

    def __init__(self, readings: list[GpuReading] | None = None) -> None:
        self.readings = readings if readings is not None else [
            GpuReading(0, "Fake H100 80GB HBM3", int(31.5 * GIB), 80 * GIB, 87.0, 64.0),
            GpuReading(1, "Fake H100 80GB HBM3", int(0.6 * GIB), 80 * GIB, 0.0, 31.0),
        ]

    def unavailable(self) -> str:
        return ""

    def read(self) -> list[GpuReading]:
        return list(self.readings)


class NoGpuSource:
    """What a CPU machine or a container without the NVIDIA driver looks like."""

    def __init__(self, reason: str = "NVML is not available (POSEGEN_TUI_GPU=none)") -> None:
        self.reason = reason

    def unavailable(self) -> str:
        return self.reason

    def read(self) -> list[GpuReading]:
        return []
