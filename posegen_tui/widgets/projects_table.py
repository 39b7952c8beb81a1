"""Projects and, under each, their sessions: state, chunks done/total, age."""

from __future__ import annotations

from collections.abc import Iterator

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from posegen_tui import fmt
from posegen_tui.data.loaders import ProjectsData
from posegen_tui.safe_text import printable
from posegen_tui.widgets.status_style import state_style

COLUMNS = ("id", "project / session", "state", "chunks", "age")


def row_key(kind: str, ident: int) -> str:
    return f"{kind}:{ident}"


def parse_key(key: str | None) -> tuple[str, int] | None:
    if not key or ":" not in key:
        return None
    kind, _, ident = key.partition(":")
    return kind, int(ident)


class ProjectsTable(DataTable):
    # vi keys beside the arrows; home/end move the cursor to the first/last row (the
    # table's own home/end only scroll).
    BINDINGS = [Binding("j", "cursor_down", "down", show=False),
                Binding("k", "cursor_up", "up", show=False),
                Binding("home", "scroll_top", "first", show=False),
                Binding("end", "scroll_bottom", "last", show=False)]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.data: ProjectsData | None = None
        self._shown: list[tuple[str, tuple[Text | str, ...]]] = []

    def on_mount(self) -> None:
        for name in COLUMNS:
            self.add_column(name, key=name)

    def show(self, data: ProjectsData, now: float) -> None:
        self.data = data
        rows = list(_rows(data, now))
        if rows == self._shown:
            return  # a poll with nothing new: nothing to redraw
        keep = self.current_key()
        self._shown = rows
        # Columns as wide as their widest cell, set here rather than measured by DataTable
        # when idle: a frame drawn before that measurement (a busy machine) shows every
        # column cut to its label's width.
        self.clear(columns=True)
        for n, name in enumerate(COLUMNS):
            width = max([cell_len(name)] + [_width(cells[n]) for _, cells in rows])
            self.add_column(name, key=name, width=width)
        for key, cells in rows:
            self.add_row(*cells, key=key)
        if keep is not None and keep in self.rows:
            self.move_cursor(row=self.get_row_index(keep), animate=False)

    def current_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:  # cursor outside the (just cleared) table
            return None
        return key.value

    def current(self) -> tuple[str, int] | None:
        return parse_key(self.current_key())

    def select_key(self, key: str) -> bool:
        if key in self.rows:
            self.move_cursor(row=self.get_row_index(key), animate=False)
            return True
        return False


def _width(cell: Text | str) -> int:
    return cell.cell_len if isinstance(cell, Text) else cell_len(cell)


def _rows(data: ProjectsData, now: float) -> Iterator[tuple[str, tuple[Text | str, ...]]]:
    """(row key, cells) of every project and, under it, its sessions."""
    for p in data.projects:
        sessions = p["sessions"]
        title = Text(printable(p["name"]), "bold")
        title.append(f" ({p.get('framing') or 'half-body'})", "dim")
        if p.get("archived"):
            title.append(" [archived]", "dim")
        yield row_key("project", p["id"]), (
            Text(f"P{p['id']}", "bold"), title, "",
            f"{len(sessions)} session{'s' if len(sessions) != 1 else ''}",
            fmt.age(p["created_at"], now))
        for s in sessions:
            label = Text(f"  session {s['id']}")
            if s.get("name"):
                label.append(f" {printable(s['name'])}", "italic")
            label.append(f"  {s.get('device') or 'cpu'}", "dim")
            if s.get("archived"):
                label.append(" [archived]", "dim")
            state = s["view_state"]
            yield row_key("session", s["id"]), (
                Text(f"  #{s['id']}"), label, Text(state, state_style(state)),
                f"{s['chunks_done']}/{s['chunks_total'] or '?'}",
                fmt.age(s["created_at"], now))

