"""Projects and, under each, their sessions: state, chunks done/total, age."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from posegen_tui import fmt
from posegen_tui.data.loaders import ProjectsData
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
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.data: ProjectsData | None = None

    def on_mount(self) -> None:
        for name in COLUMNS:
            self.add_column(name, key=name)

    def show(self, data: ProjectsData, now: float) -> None:
        keep = self.current_key()
        self.data = data
        self.clear()
        for p in data.projects:
            sessions = p["sessions"]
            title = Text(p["name"], "bold")
            title.append(f" ({p.get('framing') or 'half-body'})", "dim")
            if p.get("archived"):
                title.append(" [archived]", "dim")
            self.add_row(Text(f"P{p['id']}", "bold"), title, "",
                         f"{len(sessions)} session{'s' if len(sessions) != 1 else ''}",
                         fmt.age(p["created_at"], now), key=row_key("project", p["id"]))
            for s in sessions:
                label = Text(f"  session {s['id']}")
                if s.get("name"):
                    label.append(f" {s['name']}", "italic")
                label.append(f"  {s.get('device') or 'cpu'}", "dim")
                if s.get("archived"):
                    label.append(" [archived]", "dim")
                state = s["view_state"]
                self.add_row(Text(f"  #{s['id']}"), label, Text(state, state_style(state)),
                             f"{s['chunks_done']}/{s['chunks_total'] or '?'}",
                             fmt.age(s["created_at"], now), key=row_key("session", s["id"]))
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
