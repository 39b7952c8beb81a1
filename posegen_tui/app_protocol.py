"""What screens and palette commands ask of the running app, as a protocol.

`PosegenApp` (app.py) provides it structurally. Screens reach it as `self.papp` and
the palette through `app_api(self.app)`, so nothing imports app.py back: app.py
imports the screens, never the other way round.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

from textual.app import App
from textual.message_pump import MessagePump

from posegen_tui.gpu.state import GpuState
from posegen_tui.runner import Runner
from posegen_tui.widgets.graphics import Graphics


@runtime_checkable
class AppApi(Protocol):
    @property
    def home(self) -> Path:
        """$POSEGEN_HOME: the store and the projects' files."""
        ...

    @property
    def runner(self) -> Runner:
        """Background store reads and actions."""
        ...

    @property
    def gpu_state(self) -> GpuState:
        """The latest GPU readings and memory history."""
        ...

    @property
    def poll_s(self) -> float:
        """Seconds between a view's reads of the store."""
        ...

    @property
    def auto_open(self) -> bool:
        """On start, reopen the latest running session."""
        ...

    @property
    def graphics(self) -> Graphics:
        """How pictures are drawn: half-cells, sixel or kitty graphics (tgp)."""
        ...

    def refresh_gpu_panels(self) -> None: ...

    def open_session(self, session_id: int) -> None: ...

    def show_projects(self) -> None: ...

    def new_project(self) -> None: ...

    def new_session(self, project: dict[str, Any]) -> None: ...

    def action_gpu(self) -> None: ...

    def action_help(self) -> None: ...


def app_api(app: App[object]) -> AppApi:
    """The running app seen through `AppApi` (the only app that runs our screens)."""
    return cast(AppApi, app)


class UsesApp(MessagePump):
    """Mixin for screens: `self.papp` is the running app as an `AppApi`."""

    @property
    def papp(self) -> AppApi:
        return app_api(self.app)
