"""Images as text: each cell shows two pixels with '▀' (top = foreground, bottom = background).

Works in any terminal with colour (no graphics protocol), and in snapshots.
"""

from __future__ import annotations

import numpy as np
from rich.style import Style
from rich.text import Text

UPPER_HALF = "\u2580"


def fit(img: np.ndarray, rows: int, max_cols: int | None = None) -> np.ndarray:
    """Nearest-neighbour resize to at most 2*rows pixels high and ``max_cols`` wide,
    keeping the aspect (a cell is 1x2 pixels, so pixels come out about square)."""
    h, w = img.shape[:2]
    ph = max(2, 2 * rows)
    pw = max(1, round(ph * w / h))
    if max_cols is not None and pw > max_cols:
        pw = max(1, max_cols)
        ph = max(2, 2 * round(pw * h / w / 2))  # even: two pixels per cell
    ys = np.minimum((np.arange(ph) * h / ph).astype(int), h - 1)
    xs = np.minimum((np.arange(pw) * w / pw).astype(int), w - 1)
    return img[ys][:, xs]


def halfcell_lines(img: np.ndarray) -> list[Text]:
    """One Text per cell row of an (even height) RGB uint8 image."""
    lines = []
    for y in range(0, img.shape[0] - 1, 2):
        line = Text()
        for top, bottom in zip(img[y], img[y + 1], strict=True):
            line.append(UPPER_HALF, Style(color=_rgb(top), bgcolor=_rgb(bottom)))
        lines.append(line)
    return lines


def _rgb(px: np.ndarray) -> str:
    return f"rgb({int(px[0])},{int(px[1])},{int(px[2])})"


SHADES = " .:-=+*#%@"  # dark to light


def shade_lines(img: np.ndarray) -> list[Text]:
    """NO_COLOR: one character per cell by brightness (every other pixel row of ``img``)."""
    grey = img[::2].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    idx = np.minimum((grey * len(SHADES) / 256).astype(int), len(SHADES) - 1)
    return [Text("".join(SHADES[i] for i in row)) for row in idx]
