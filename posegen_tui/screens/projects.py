"""The start screen: projects and their sessions; open, create, archive, delete."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from posegen_tui import fmt
from posegen_tui.app_protocol import UsesApp
from posegen_tui.data import actions
from posegen_tui.data.loaders import ProjectsData, load_projects
from posegen_tui.runner import ACTIONS, ReceivesResults
from posegen_tui.safe_text import printable
from posegen_tui.screens.confirm import ConfirmScreen
from posegen_tui.widgets.projects_table import ProjectsTable, row_key
from sessions.control import ACTIVE_STATES

EMPTY = ("No projects yet. Press n to create one (reference image, pose and hand clips, "
         "prompt), or quit and run `posegen-tui --demo` for a tiny demo project.")


class ProjectsScreen(UsesApp, ReceivesResults, Screen[None]):
    BINDINGS = [
        Binding("question_mark", "app.help", "help", key_display="?"),
        Binding("enter", "open", "open"),
        Binding("n", "new_project", "new project"),
        Binding("N,S", "new_session", "new session", key_display="N"),
        Binding("a", "archive", "archive"),
        Binding("d", "delete", "delete"),
        Binding("A", "toggle_archived", "show archived", show=False),
        # Off the footer so it fits 80 columns with q; ? and ctrl+p list them.
        Binding("b", "budget", "budget", show=False),
        Binding("g", "app.gpu", "GPU", show=False),
    ]

    def __init__(self) -> None:
        super().__init__(id="projects")
        self.data: ProjectsData | None = None
        self.include_archived = False
        self.loaded = False
        self.detail_shown = False  # the highlighted row's details are on screen
        self._auto_opened = False
        self._select_next: str | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text("posegen-tui · projects and sessions", "bold"), id="projects-title")
        yield ProjectsTable(id="projects-table")
        yield Static(id="projects-detail")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(ProjectsTable).focus()
        self.set_interval(max(1.0, self.papp.poll_s), self.poll)
        self.poll()

    def on_screen_resume(self) -> None:
        self.poll()

    def poll(self) -> None:
        call = partial(load_projects, self.papp.home, self.include_archived)
        self.papp.runner.submit(self, "projects", call, self.apply)

    def select_when_shown(self, key: str) -> None:
        """Move the cursor to row ``key`` once a poll shows it (a project just created:
        N then makes a session of it, not of the row selected before)."""
        self._select_next = key
        self.poll()

    def apply(self, data: ProjectsData) -> None:
        self.data = data
        table = self.query_one(ProjectsTable)
        table.show(data, data.loaded_at)
        if self._select_next and table.select_key(self._select_next):
            self._select_next = None
        self._detail()
        self.loaded = True
        if not self._auto_opened:
            self._auto_opened = True
            self._open_running(data)

    def _open_running(self, data: ProjectsData) -> None:
        """Re-attach: reopening the app shows the session that is running."""
        if not self.papp.auto_open or self.app.screen is not self:
            return
        active = [s for p in data.projects for s in p["sessions"]
                  if s["view_state"] in ACTIVE_STATES]
        if active:
            latest = max(active, key=lambda s: s["updated_at"])
            self.query_one(ProjectsTable).select_key(row_key("session", latest["id"]))
            self.papp.open_session(latest["id"])

    def on_data_table_row_highlighted(self, _: DataTable.RowHighlighted) -> None:
        self._detail()

    def _detail(self) -> None:
        self.detail_shown = False
        detail = self.query_one("#projects-detail", Static)
        data, current = self.data, self.query_one(ProjectsTable).current()
        if data is None or not data.projects:
            detail.update(Text(EMPTY, "italic"))
            return
        if current is None:
            detail.update("")
            return
        kind, ident = current
        project = self._project_of(kind, ident)
        if project is None:
            detail.update("")
            return
        t = Text()
        if kind == "session":
            s = next(s for s in project["sessions"] if s["id"] == ident)
            st = s.get("settings") or {}
            t.append(f"session {ident}: ", "bold")
            # width x height, as players and ffprobe say it (the video is W wide)
            t.append(f"{st.get('width')}x{st.get('height')}  steps {s['steps']}  cfg "
                     f"{s['cfg']:g}  seed {s['seed']}  -s {s['share_steps']}  -b "
                     f"{s['share_blocks']}  -p {s.get('budget') or 'none'}  "
                     f"chunks {st.get('frames')}/{st.get('head')}/{st.get('tail')}  "
                     f"anchor {s['anchor']}")
            if s.get("error"):
                t.append(f"\n! {s['error']}", "bold red")
            t.append("\nEnter opens it.", "dim")
        else:
            t.append(f"{printable(project['name'])}: ", "bold")
            t.append(printable(project["prompt"]))
            t.append(f"\nimage {_name(project['image'])} · pose {_name(project['pose'])} · "
                     f"hand {_name(project['hand'])} · created "
                     f"{fmt.age(project['created_at'], data.loaded_at)} ago", "dim")
            t.append("\nN: new session of this project (Enter too).", "dim")
        detail.update(t)
        self.detail_shown = True

    def _project_of(self, kind: str, ident: int) -> dict | None:
        for p in self.data.projects if self.data else []:
            if kind == "project" and p["id"] == ident:
                return p
            if kind == "session" and any(s["id"] == ident for s in p["sessions"]):
                return p
        return None

    # -- keys ------------------------------------------------------------------------

    def on_data_table_row_selected(self, _: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        current = self.query_one(ProjectsTable).current()
        if current is None:
            return
        kind, ident = current
        if kind == "session":
            self.papp.open_session(ident)
        else:
            self.action_new_session()

    def action_new_project(self) -> None:
        self.papp.new_project()

    def action_new_session(self) -> None:
        current = self.query_one(ProjectsTable).current()
        project = self._project_of(*current) if current else None
        if project is None:
            self.notify("create a project first (n)", severity="warning")
            return
        self.papp.new_session(project)

    def action_toggle_archived(self) -> None:
        self.include_archived = not self.include_archived
        self.notify("showing archived" if self.include_archived else "hiding archived")
        self.poll()

    def action_budget(self) -> None:
        from posegen_tui.screens.budget import BudgetScreen

        current = self.query_one(ProjectsTable).current()
        project = self._project_of(*current) if current else None
        if project is not None:
            self.app.push_screen(BudgetScreen(project["id"]))

    def _confirm_then(self, question: str, detail: str, call: Callable[[], str],
                      what: str) -> None:
        def answer(yes: bool | None) -> None:
            if yes:
                self.papp.runner.submit(self, what, call, self._done, group=ACTIONS)

        self.app.push_screen(ConfirmScreen(question, detail), answer)

    def _done(self, message: str) -> None:
        self.notify(message)
        self.poll()

    def action_delete(self) -> None:
        current = self.query_one(ProjectsTable).current()
        if current is None:
            return
        kind, ident = current
        project = self._project_of(kind, ident) or {}
        running = [s["id"] for s in project.get("sessions", [])
                   if s.get("view_state") in ACTIVE_STATES and (kind == "project" or
                                                                s["id"] == ident)]
        if running:  # the store refuses it anyway: say so before asking
            self.notify(f"session {running[0]} is running: stop it first (x in the session, "
                        f"or `posegen stop {running[0]}`), then delete", severity="warning")
            return
        what = "the project and all its sessions" if kind == "project" else "the session"
        detail = (f"Deletes {what} from the database (chunks, events, workers); "
                  "workspace folders with frames and videos stay on disk.")
        self._confirm_then(f"Delete {kind} {ident}?", detail,
                           partial(actions.delete, self.papp.home, kind, ident), "delete")

    def action_archive(self) -> None:
        current = self.query_one(ProjectsTable).current()
        if current is None:
            return
        kind, ident = current
        project = self._project_of(kind, ident) or {}
        row = project if kind == "project" else next(
            (s for s in project.get("sessions", []) if s["id"] == ident), {})
        restore = bool(row.get("archived"))
        verb = "Restore" if restore else "Archive"
        self._confirm_then(
            f"{verb} {kind} {ident}?",
            "Archived items are hidden from this list (A shows them); nothing is deleted.",
            partial(actions.archive, self.papp.home, kind, ident, not restore), "archive")


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1]
