"""A few decoded frames of the selected chunk, drawn with half-cell blocks."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from posegen_tui.data.chunk_files import ChunkFiles
from posegen_tui.widgets.halfcell import fit, halfcell_lines


class ThumbnailStrip(Widget):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.files: ChunkFiles | None = None

    def show(self, files: ChunkFiles | None) -> None:
        self.files = files
        self.refresh()

    def render(self) -> Text:
        files = self.files
        if files is None:
            return Text("")
        if not files.thumbs:
            return Text(files.problem or "no frames", style="italic dim")
        width, height = self.content_size.width, self.content_size.height
        rows = max(1, height - 1)  # the last line holds the frame numbers
        per = max(1, (width - (len(files.thumbs) - 1)) // len(files.thumbs))
        images = [halfcell_lines(fit(img, rows, per)) for _, img in files.thumbs]
        cols = [img[0].cell_len if img else 0 for img in images]
        lines = []
        for r in range(max(len(img) for img in images)):
            line = Text()
            for i, img in enumerate(images):
                if i:
                    line.append(" ")
                line.append_text(img[r] if r < len(img) else Text(" " * cols[i]))
            lines.append(line)
        caption = Text(style="dim")
        for i, (frame, _) in enumerate(files.thumbs):
            if i:
                caption.append(" ")
            caption.append(f"f{frame}"[: cols[i]].ljust(cols[i]))
        lines.append(caption)
        return Text("\n").join(lines)
