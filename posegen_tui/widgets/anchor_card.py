"""One base chunk of a preview as a card: its middle frame and its background figure."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from posegen_tui.data.anchor_choice import Candidate
from posegen_tui.widgets.halfcell import fit, halfcell_lines, shade_lines

CAPTION_ROWS = 3


class AnchorCard(Widget):
    def __init__(self, candidate: Candidate, *, stillest: bool, preview_anchor: bool) -> None:
        super().__init__(id=f"card-{candidate.idx}", classes="anchor-card")
        self.candidate, self.stillest, self.preview_anchor = candidate, stillest, preview_anchor

    def render(self) -> Text:
        c = self.candidate
        width, height = self.content_size.width, self.content_size.height
        rows = max(1, height - CAPTION_ROWS)
        lines: list[Text] = []
        if c.thumb is not None:
            img = fit(c.thumb, rows, width)
            lines = shade_lines(img) if self.app.no_color else halfcell_lines(img)
        else:
            lines = [Text(c.status if c.status != "done" else "no frames", style="italic dim")]
        lines += [Text("")] * max(0, rows - len(lines))
        lines.append(Text(f"chunk {c.idx}", style="bold"))
        lines.append(Text(f"bg {c.motion:.1f}/frame" if c.motion is not None else
                          ("bg n/a" if c.status == "done" else c.status)))
        marks = [m for m, on in (("stillest", self.stillest),
                                 ("preview's anchor", self.preview_anchor)) if on]
        lines.append(Text(", ".join(marks), style="italic"))
        return Text("\n").join(line.copy() for line in lines)
