"""The player's picture: one video frame, as large as the widget allows.

Half-cells (halfcell.py, as the thumbnails) in any colour terminal; shades of grey
under NO_COLOR; sixel or kitty graphics through textual-image where the terminal
speaks them (`graphics.detect`).
"""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.widget import Widget

from posegen_tui.widgets.graphics import Graphics
from posegen_tui.widgets.halfcell import fit, halfcell_lines, shade_lines


class HalfcellFrame(Widget):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.frame: np.ndarray | None = None

    def show(self, frame: np.ndarray) -> None:
        self.frame = frame
        self.refresh()

    def render(self) -> Text:
        if self.frame is None:
            return Text("")
        rows, cols = self.content_size.height, self.content_size.width
        img = fit(self.frame, rows, cols)
        lines = shade_lines(img) if self.app.no_color else halfcell_lines(img)
        return Text("\n").join(lines)


class PictureFrame(Widget):
    """A textual-image widget that gets each frame as a PIL image."""

    def __init__(self, graphics: Graphics, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.graphics = graphics

    def compose(self) -> ComposeResult:
        from textual_image.widget import SixelImage, TGPImage

        kind = SixelImage if self.graphics == "sixel" else TGPImage
        yield kind(classes="picture")

    def show(self, frame: np.ndarray) -> None:
        from PIL import Image

        image = self.query_one(".picture")
        image.image = Image.fromarray(frame)  # type: ignore[attr-defined]


def frame_widget(graphics: Graphics, id: str) -> HalfcellFrame | PictureFrame:
    return HalfcellFrame(id=id) if graphics == "halfcell" else PictureFrame(graphics, id=id)
