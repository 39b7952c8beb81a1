"""Drawing the chunk timeline as text: pure, so tests can read it without an app.

Lines: the frame axis, the base row (anchor and base chunks), the cond row,
^ marks under the selected chunk with its summary, and the glyph legend.
"""

from __future__ import annotations

from rich.text import Text

from posegen_tui import fmt
from posegen_tui.data.chunk import Chunk
from posegen_tui.widgets.status_style import GLYPHS, ORDER, glyph, style
from posegen_tui.widgets.timeline_layout import GUTTER, Layout, Span, layout

ROW_NAMES = ("base", "cond")


def timeline_text(chunks: list[Chunk], width: int, selected: int | None, now: float) -> Text:
    if not chunks:
        return Text("no chunks yet", style="italic")
    lay = layout(chunks, width)
    lines = [_axis(lay), *_rows(lay, selected), _caret(lay, selected, now), _legend(width)]
    return Text("\n").join(lines)


def summary(c: Chunk, now: float) -> str:
    text = f"{c.idx} {c.role} {c.status}"
    if c.status == "running" and c.phase and c.phase != "sampling":
        # Loading, encoding, decoding, writing: no step moves, so say what it does.
        text += f" {c.phase} {fmt.duration(c.phase_seconds)}"
    elif c.status == "running":
        text += f" {c.step}/{c.steps or '?'} ETA {fmt.eta(c.eta(now))}"
    return text


def _axis(lay: Layout) -> Text:
    line = Text("frame".ljust(GUTTER), style="bold")
    col = len(line)
    for c, frame in lay.ticks:
        label = str(frame)
        if c < col or c + len(label) > lay.width:
            continue
        line.append(" " * (c - col) + label, style="dim")
        col = c + len(label) + 1  # keep a space between labels
    return line


def _rows(lay: Layout, selected: int | None) -> list[Text]:
    rows = []
    for r, name in enumerate(ROW_NAMES):
        chars = [" "] * lay.width
        styles = [""] * lay.width
        for span in (s for s in lay.spans if s.row == r):
            _draw(span, chars, styles, span.chunk.idx == selected)
        line = Text(name.ljust(GUTTER), style="bold")
        for ch, st in zip(chars[GUTTER:], styles[GUTTER:], strict=True):
            line.append(ch, st)
        rows.append(line)
    return rows


def _draw(span: Span, chars: list[str], styles: list[str], selected: bool) -> None:
    c, w = span.chunk, span.c1 - span.c0
    fill = [glyph(c.status)] * w
    if c.status == "running" and c.steps:
        k = round(w * c.step / c.steps)
        fill = [">"] * k + [" "] * (w - k)  # progress by steps done
    if w >= 3:
        fill[0], fill[-1] = "[", "]"
    label = f"{c.idx}{'A' if c.role == 'anchor' else ''}"
    steps_text = f" {c.step}/{c.steps}"
    if c.status == "running" and c.steps and len(label) + len(steps_text) + 6 <= w - 2:
        label += steps_text  # room left for the > progress fill after it
    inner = 1 if w >= 3 else 0
    if len(label) <= w - 2 * inner:
        fill[inner:inner + len(label)] = label
    st = style(c.status)
    if selected:
        st = f"{st} reverse".strip()
    for i, ch in enumerate(fill):
        col = span.c0 + i
        if 0 <= col < len(chars):
            chars[col], styles[col] = ch, st


def _caret(lay: Layout, selected: int | None, now: float) -> Text:
    span = next((s for s in lay.spans if s.chunk.idx == selected), None)
    if span is None:
        return Text("")
    text = summary(span.chunk, now)
    marks = "^" * (span.c1 - span.c0)
    if span.c1 + 1 + len(text) <= lay.width:
        return Text(" " * span.c0 + marks + " " + text)
    if len(text) + 1 <= span.c0:
        return Text(" " * (span.c0 - len(text) - 1) + text + " " + marks)
    return Text(" " * span.c0 + marks)


def _legend(width: int) -> Text:
    line = Text()
    for status in ORDER:
        part = f"{GLYPHS[status]} {status}  "
        if len(line) + len(part) > width:
            break
        line.append(GLYPHS[status], style(status))
        line.append(f" {status}  ", "dim")
    if len(line) + 8 <= width:
        line.append("A anchor", "dim")
    return line
