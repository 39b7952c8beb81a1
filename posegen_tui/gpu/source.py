"""The `GpuSource` protocol and the `GpuReading` it returns.

The sources (`nvml`, `fake`) import this module; `from_env` picks one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


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

