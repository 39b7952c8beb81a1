"""Read GPU memory through NVML (nvidia-ml-py). Every failure becomes None, never a crash.

NVML is optional: CPU machines, containers without the driver library, and
driver errors all simply report "no data".
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

_lock = threading.Lock()
_state = {"init": False, "error": ""}


@dataclass(frozen=True)
class DeviceMemory:
    index: int
    name: str
    used: int
    total: int
    util: int | None
    temp: int | None


def _nvml():
    import pynvml

    with _lock:
        if not _state["init"]:
            pynvml.nvmlInit()
            _state["init"] = True
    return pynvml


def nvml_error() -> str:
    """Why NVML is unavailable ('' when it works)."""
    try:
        _nvml()
        return ""
    except Exception as e:  # NVMLError_LibraryNotFound, ImportError, driver errors
        return f"{type(e).__name__}: {e}"


def device_memory(index: int) -> DeviceMemory | None:
    try:
        nv = _nvml()
        h = nv.nvmlDeviceGetHandleByIndex(index)
        mem = nv.nvmlDeviceGetMemoryInfo(h)
        name = nv.nvmlDeviceGetName(h)
        name = name.decode() if isinstance(name, bytes) else str(name)
    except Exception:
        return None
    util = _optional(lambda: int(nv.nvmlDeviceGetUtilizationRates(h).gpu))
    temp = _optional(lambda: int(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)))
    return DeviceMemory(index, name, int(mem.used), int(mem.total), util, temp)


def _optional(read):
    """Some devices lack a sensor or counter: that reading is N/A, not an error."""
    try:
        return read()
    except Exception:
        return None


def device_index(device: str) -> int | None:
    """NVML index of a torch device string ('cuda' -> 0, 'cuda:1' -> 1, 'cpu' -> None)."""
    if not device.startswith("cuda"):
        return None
    _, _, idx = device.partition(":")
    return int(idx) if idx else 0
