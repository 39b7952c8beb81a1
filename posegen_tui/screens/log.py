"""`l` on a session: its events and workers' logs in full, followed live, searchable."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, Log, Static

from posegen_tui.app_protocol import UsesApp
from posegen_tui.data.session_log import MAX_LINES, LogCursor, read_new
from posegen_tui.runner import ReceivesResults

POLL_S = 1.0


class LogScreen(UsesApp, ReceivesResults, Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "back"),
        Binding("f", "follow", "follow"),
        Binding("slash", "search", "search", key_display="/"),
        Binding("n", "next_match(1)", "next"),
        Binding("N", "next_match(-1)", "previous", show=False),
        Binding("home", "top", "top", show=False),
        Binding("end", "bottom", "bottom", show=False),
    ]

    def __init__(self, session_id: int) -> None:
        super().__init__()
        self.session_id = session_id
        self.cursor = LogCursor()
        self.lines: list[str] = []
        self.follow = True
        self.query_text = ""
        self.match = -1  # line index of the current match
        self.loaded = False  # the first read is on screen (tests wait for it)

    def compose(self) -> ComposeResult:
        yield Static(id="log-status")
        yield Log(id="log-view", highlight=False, max_lines=MAX_LINES)
        yield Input(placeholder="search (enter: find, esc: close)", id="log-search")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#log-search", Input).display = False
        self.query_one("#log-view", Log).focus()
        self.read()
        self.set_interval(POLL_S, self.read)

    def read(self) -> None:
        self.papp.runner.submit(self, f"log-{self.session_id}", self._read_new, self._add)

    def _read_new(self) -> list[str]:
        return read_new(self.papp.home, self.session_id, self.cursor)

    def _add(self, new: list[str]) -> None:
        self.loaded = True
        if new:
            self.lines = (self.lines + new)[-MAX_LINES:]
            view = self.query_one("#log-view", Log)
            view.auto_scroll = self.follow
            view.write_lines(new)
        self._status()

    def _status(self) -> None:
        parts = [f"session {self.session_id} · {len(self.lines)} lines",
                 "following (f stops)" if self.follow else "paused (f follows)"]
        if self.query_text:
            hits = sum(self.query_text in ln.lower() for ln in self.lines)
            where = f"line {self.match + 1}" if self.match >= 0 else "no match"
            parts.append(f"/{self.query_text}: {hits} lines, {where} (n next, N previous)")
        self.query_one("#log-status", Static).update(" · ".join(parts))

    def action_back(self) -> None:
        search = self.query_one("#log-search", Input)
        if search.display:
            search.display = False
            self.query_one("#log-view", Log).focus()
            return
        self.dismiss(None)

    def action_follow(self) -> None:
        self.follow = not self.follow
        view = self.query_one("#log-view", Log)
        view.auto_scroll = self.follow
        if self.follow:
            view.scroll_end(animate=False)
        self._status()

    def action_search(self) -> None:
        search = self.query_one("#log-search", Input)
        search.display = True
        search.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_text = event.value.strip().lower()
        event.input.display = False
        self.query_one("#log-view", Log).focus()
        self.match = -1
        self.action_next_match(1)

    def action_next_match(self, direction: int) -> None:
        if not self.query_text:
            self.action_search()
            return
        n = len(self.lines)
        start = self.match if self.match >= 0 else (n if direction < 0 else -1)
        for k in range(1, n + 1):
            i = (start + direction * k) % n
            if self.query_text in self.lines[i].lower():
                self.match = i
                break
        else:
            self.match = -1
        if self.match >= 0:
            self.follow = False  # looking back: new lines must not scroll it away
            view = self.query_one("#log-view", Log)
            view.auto_scroll = False
            view.scroll_to(y=max(0, self.match - view.size.height // 2), animate=False)
        self._status()

    def action_top(self) -> None:
        self.follow = False
        self.query_one("#log-view", Log).scroll_home(animate=False)
        self._status()

    def action_bottom(self) -> None:
        self.query_one("#log-view", Log).scroll_end(animate=False)
