"""`--demo`: prepare the tiny demo project (once), start it, then open its session view."""

from __future__ import annotations

from functools import partial

from rich.text import Text
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, LoadingIndicator, Static

from posegen_tui.app_protocol import UsesApp
from posegen_tui.data.demo import prepare_demo
from posegen_tui.runner import ACTIONS, ReceivesResults
from posegen_tui.widgets.demo_banner import DemoBanner


class DemoSetupScreen(UsesApp, ReceivesResults, Screen[None]):
    def compose(self) -> ComposeResult:
        yield DemoBanner(id="demo-banner")
        yield Static(Text("Preparing the demo in $POSEGEN_HOME/demo …", "bold"),
                     id="demo-steps")
        yield LoadingIndicator()
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.lines: list[str] = []
        say = partial(self.app.call_from_thread, self._say)
        self.papp.runner.submit(self, "demo", partial(prepare_demo, self.papp.home, say),
                                self._ready, group=ACTIONS, on_error=self._failed)

    def _say(self, line: str) -> None:
        self.lines.append(line)
        self.query_one("#demo-steps", Static).update("\n".join(self.lines))

    def _ready(self, session_id: int) -> None:
        from posegen_tui.screens.session import SessionScreen

        self.app.switch_screen(SessionScreen(session_id))

    def _failed(self, error: BaseException) -> None:
        self.query_one(LoadingIndicator).display = False
        self._say(f"! demo setup failed: {error}")
