"""`?`: every key of the screen underneath and of the app, plus what the glyphs mean."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from posegen_tui.widgets.status_style import GLYPHS, ORDER, style

KEY_NAMES = {"question_mark": "?", "escape": "esc", "left": "←", "right": "→",
             "left_square_bracket": "[", "right_square_bracket": "]"}


def _key(binding: Binding) -> str:
    return "/".join(KEY_NAMES.get(k.strip(), k.strip()) for k in binding.key.split(","))


def _bindings(node: DOMNode) -> list[Binding]:
    seen: dict[str, Binding] = {}
    for b in node.BINDINGS:
        if isinstance(b, Binding) and b.description:
            seen.setdefault(b.action, b)
    return list(seen.values())


def bindings_table(title: str, bindings: list[Binding]) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold underline",
                  show_header=False, box=None, padding=(0, 1))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for b in bindings:
        table.add_row(_key(b), b.description)
    return table


def legend() -> Text:
    t = Text()
    t.append("timeline\n", "bold underline")
    for status in ORDER:
        t.append(f" {GLYPHS[status]} ", style(status))
        t.append(f"{status}\n")
    t.append(" A anchor   [..] a chunk's frames\n ^ the selected chunk")
    return t


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "close")]

    def __init__(self, under: Screen[Any]) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog", id="help"):
            yield Static(self.render_help())

    def render_help(self) -> Table:
        name = type(self.under).__name__.removesuffix("Screen").lower() or "screen"
        app_keys = [*_bindings(self.app),
                    Binding("ctrl+p", "command_palette", "command palette")]
        grid = Table.grid(padding=(0, 4))
        grid.add_column()
        grid.add_column()
        grid.add_row(bindings_table(f"keys: {name}", _bindings(self.under)),
                     Group(bindings_table("keys: everywhere", app_keys), Text(""), legend()))
        return grid

    def action_close(self) -> None:
        self.dismiss(None)
