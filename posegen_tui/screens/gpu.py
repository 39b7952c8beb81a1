"""`g`: the GPU panel on its own screen (the session view shows it beside the chunk
when the terminal is wide enough)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static

from posegen_tui.app_protocol import UsesApp
from posegen_tui.widgets.gpu_panel import GpuPanel


class GpuScreen(UsesApp, Screen[None]):
    BINDINGS = [Binding("escape,g", "back", "back")]

    def compose(self) -> ComposeResult:
        yield Static("GPUs · memory, utilisation, temperature; workers' own numbers",
                     id="gpu-title")
        yield GpuPanel(id="gpu-panel")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.papp.refresh_gpu_panels()

    def action_back(self) -> None:
        self.app.pop_screen()
