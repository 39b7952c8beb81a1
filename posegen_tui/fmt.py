"""Short, fixed-width text for numbers the app shows (sizes, ages, durations)."""

from __future__ import annotations

import time

from engine.progress import format_seconds

__all__ = ["age", "clock_time", "duration", "eta", "gib", "size"]


def size(n: int | float | None) -> str:
    """Bytes as B, kB, MB, GB (decimal units, as `posegen cache` prints)."""
    if n is None:
        return "N/A"
    n = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover - loop always returns


def gib(n: int | float | None) -> str:
    """GPU memory in GiB, as nvidia-smi and torch report it."""
    return "N/A" if n is None else f"{n / 2**30:.1f} GiB"


def age(t: float | None, now: float | None = None) -> str:
    """How long ago: 45s, 12m, 3h, 5d."""
    if t is None:
        return "-"
    seconds = max(0.0, (time.time() if now is None else now) - t)
    for unit, length, limit in (("s", 1, 60), ("m", 60, 3600), ("h", 3600, 86400)):
        if seconds < limit:
            return f"{int(seconds // length)}{unit}"
    return f"{int(seconds // 86400)}d"


def eta(seconds: float | None) -> str:
    return format_seconds(None if seconds is None else max(seconds, 0.0))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f} s" if seconds < 60 else format_seconds(seconds)


def clock_time(t: float | None) -> str:
    """Local wall-clock time of day (the tests pin TZ=UTC)."""
    return "--:--:--" if t is None else time.strftime("%H:%M:%S", time.localtime(t))
