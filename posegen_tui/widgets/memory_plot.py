"""Memory use over time on a fixed 0..total scale (a sparkline would stretch min..max)."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

LEVELS = " ▁▂▃▄▅▆▇█"


def plot_lines(series: list[int], total: int, width: int, height: int) -> list[str]:
    """Columns are the max of their bucket of points, newest on the right."""
    if width <= 0 or height <= 0:
        return []
    if not series or total <= 0:
        return [" " * width] * height
    n = len(series)
    cols = min(width, n)
    values = [max(series[i * n // cols:max((i + 1) * n // cols, i * n // cols + 1)])
              for i in range(cols)]
    # Any use shows at least the lowest bar: an idle-but-used device is not an empty one.
    eighths = [min(height * 8, max(1 if v > 0 else 0, round(v / total * height * 8)))
               for v in values]
    lines = []
    for row in range(height - 1, -1, -1):  # top row first
        line = "".join(LEVELS[max(0, min(8, e - row * 8))] for e in eighths)
        lines.append(line.rjust(width))
    return lines


class MemoryPlot(Widget):
    def __init__(self, *, classes: str | None = None) -> None:
        super().__init__(classes=classes)
        self.series: list[int] = []
        self.total = 0

    def show(self, series: list[int], total: int | None) -> None:
        self.series, self.total = series, total or 0
        self.refresh()

    def render(self) -> Text:
        size = self.content_size
        lines = plot_lines(self.series, self.total, size.width, size.height)
        return Text("\n".join(lines), style="green")
