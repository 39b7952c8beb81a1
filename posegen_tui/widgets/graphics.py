"""Which picture protocol the terminal speaks: sixel, kitty's (tgp) or none (half-cells).

textual-image asks the terminal when imported, which only works before Textual owns
stdin: `posegen-tui` calls `detect()` before the app starts and hands the answer in.
POSEGEN_TUI_GRAPHICS=halfcell|sixel|tgp skips the question.
"""

from __future__ import annotations

import os
import sys
from typing import Literal

Graphics = Literal["halfcell", "sixel", "tgp"]
MODES: tuple[Graphics, ...] = ("halfcell", "sixel", "tgp")


def detect() -> Graphics:
    forced = os.environ.get("POSEGEN_TUI_GRAPHICS", "")
    for mode in MODES:
        if forced == mode:
            return mode
    if not (sys.__stdout__ and sys.__stdout__.isatty()):
        return "halfcell"
    try:  # importing asks the terminal (sixel first, then tgp) and the cell size
        import textual_image.widget  # noqa: F401
        from textual_image import renderable
    except Exception:  # a terminal that answers nothing sensible: half-cells work anywhere
        return "halfcell"
    if renderable.Image is renderable.SixelImage:
        return "sixel"
    if renderable.Image is renderable.TGPImage:
        return "tgp"
    return "halfcell"
