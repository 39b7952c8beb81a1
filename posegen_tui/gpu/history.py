"""Memory use over time per device: DB samples merged with this app's own readings."""

from __future__ import annotations

from collections.abc import Iterable


class GpuHistory:
    """Points keyed by whole seconds, so a reading and a DB sample of the same second
    (or repeated readings under a frozen test clock) count once."""

    def __init__(self, keep: int = 720) -> None:
        self.keep = keep
        self._points: dict[int, dict[int, int]] = {}

    def add(self, index: int, t: float, used: int | None) -> None:
        if used is None:
            return
        points = self._points.setdefault(index, {})
        points[int(t)] = int(used)
        if len(points) > self.keep:
            for key in sorted(points)[: len(points) - self.keep]:
                del points[key]

    def add_samples(self, rows: Iterable[dict]) -> None:
        """Rows of `Store.gpu_samples` (this host's)."""
        for row in rows:
            self.add(int(row["device_index"]), float(row["t"]), row.get("used"))

    def series(self, index: int) -> list[int]:
        points = self._points.get(index, {})
        return [points[k] for k in sorted(points)]

    def span(self, index: int) -> float:
        """Seconds between the first and last point (for the plot's caption)."""
        keys = sorted(self._points.get(index, {}))
        return float(keys[-1] - keys[0]) if len(keys) > 1 else 0.0
