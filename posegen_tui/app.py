"""The posegen-tui application: screens, the background runner, GPU polling, keys."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

from textual.app import App
from textual.binding import Binding
from textual.notifications import SeverityLevel
from textual.worker import Worker, WorkerState

from posegen_tui.commands import PosegenCommands
from posegen_tui.data.endings import EndWatcher, SessionBrief, load_states
from posegen_tui.data.loaders import load_gpu_side
from posegen_tui.gpu.from_env import source_from_env
from posegen_tui.gpu.source import GpuSource
from posegen_tui.gpu.state import GpuState, GpuTick
from posegen_tui.runner import GPU, GROUPS, ReceivesResults, Runner
from posegen_tui.screens.gpu import GpuScreen
from posegen_tui.screens.help import HelpScreen
from posegen_tui.screens.projects import ProjectsScreen
from posegen_tui.screens.session import SessionScreen
from posegen_tui.term_notify import desktop_escape
from posegen_tui.widgets.gpu_panel import GpuPanel
from posegen_tui.widgets.graphics import Graphics
from posegen_tui.widgets.projects_table import row_key
from sessions.paths import home as default_home

TCSS = Path(__file__).parent / "tcss"
HISTORY_S = 3600.0  # GPU samples from the store shown on start


def read_gpus(source: GpuSource, home: Path, since: float) -> GpuTick:
    """One GPU tick (on a thread): device readings, live workers' numbers, new samples
    of this host, the latest sample of every host's devices."""
    now = time.time()
    readings = source.read()
    workers, samples, nodes = load_gpu_side(home, since, now - HISTORY_S)
    return GpuTick(readings, source.unavailable(), workers, samples, nodes, now,
                   socket.gethostname())


class PosegenApp(ReceivesResults, App[int]):
    TITLE = "posegen-tui"
    CSS_PATH = [TCSS / "app.tcss", TCSS / "session.tcss", TCSS / "projects.tcss",
                TCSS / "dialogs.tcss", TCSS / "gpu.tcss", TCSS / "log.tcss",
                TCSS / "player.tcss", TCSS / "anchor.tcss"]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    BINDINGS = [Binding("q", "quit", "quit"),
                Binding("question_mark", "help", "help", key_display="?")]
    COMMANDS = App.COMMANDS | {PosegenCommands}

    def __init__(self, home: Path | None = None, gpu: GpuSource | None = None, *,
                 demo: bool = False, session: int | None = None, auto_open: bool = True,
                 poll_s: float = 0.5, gpu_poll_s: float = 2.0, blink: bool = True,
                 handle_hangup: bool = False, graphics: Graphics = "halfcell") -> None:
        super().__init__()
        self.home = Path(home) if home is not None else default_home()
        self.gpu_source = gpu if gpu is not None else source_from_env()
        self.demo, self.start_session, self.auto_open = demo, session, auto_open
        self.poll_s, self.gpu_poll_s, self.blink = poll_s, gpu_poll_s, blink
        self.handle_hangup = handle_hangup
        self.graphics = graphics
        self.runner = Runner(self)
        self.gpu_state = GpuState()
        self._gpu_since = time.time() - HISTORY_S
        self._last_error = ("", 0.0)
        self.endings = EndWatcher()

    def on_mount(self) -> None:
        if self.handle_hangup:
            self._watch_hangup()
        self.push_screen(ProjectsScreen())
        if self.demo:
            from posegen_tui.screens.demo_setup import DemoSetupScreen

            self.push_screen(DemoSetupScreen())
        elif self.start_session is not None:
            self.open_session(self.start_session)
        self.set_interval(self.gpu_poll_s, self.poll_gpu)
        self.poll_gpu()
        self.set_interval(max(1.0, self.poll_s), self.poll_endings)
        self.poll_endings()

    # -- background work -------------------------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one error handler of every store read, action and GPU reading."""
        worker = event.worker
        if worker.group not in GROUPS or event.state not in (
                WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            return
        own_handler = self.runner.finished(worker)
        if event.state != WorkerState.ERROR or worker.error is None:
            return
        if own_handler is not None:
            own_handler(worker.error)
        else:
            self.report(worker.error)

    def report(self, error: BaseException) -> None:
        text = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        last, when = self._last_error
        if text == last and time.monotonic() - when < 30:
            return  # a poll failing every half second says it once
        self._last_error = (text, time.monotonic())
        self.notify(text, title="problem", severity="error", timeout=8)

    def poll_gpu(self) -> None:
        call = partial(read_gpus, self.gpu_source, self.home, self._gpu_since)
        self.runner.submit(self, "gpu", call, self._gpu_read, group=GPU)

    def _gpu_read(self, tick: GpuTick) -> None:
        state = self.gpu_state
        state.readings, state.unavailable, state.workers = (tick.readings, tick.unavailable,
                                                            tick.workers)
        state.nodes, state.host, state.read_at = tick.nodes, tick.host, tick.now
        state.history.add_samples(tick.samples)
        for r in tick.readings:
            state.history.add(r.index, tick.now, r.used)
        state.loaded = True
        if tick.samples:
            self._gpu_since = max(s["t"] for s in tick.samples) + 1e-6
        self.refresh_gpu_panels()

    def poll_endings(self) -> None:
        """Every session in the store, whichever screen is shown: say when one ends."""
        self.runner.submit(self, "endings", partial(load_states, self.home),
                           self._states_read)

    def _states_read(self, states: dict[int, SessionBrief]) -> None:
        for ended in self.endings.update(states):
            self.tell_ended(ended)

    def tell_ended(self, ended: SessionBrief) -> None:
        """A toast, the bell, and a desktop notification where the terminal has one."""
        severity: SeverityLevel = ("information" if ended.state == "done" else
                                   "error" if ended.state == "failed" else "warning")
        self.notify(ended.message(), title="session ended", severity=severity, timeout=15)
        self.bell()
        escape = desktop_escape("posegen", ended.message(), os.environ)
        # Through the driver, as App.copy_to_clipboard writes OSC 52: the driver's writer
        # thread puts it between two frames, and an OSC moves no cursor, so the screen
        # stays intact. (A headless driver drops it.)
        if escape is not None and self._driver is not None:
            self._driver.write(escape)

    def refresh_gpu_panels(self) -> None:
        for panel in self.screen.query(GpuPanel):
            panel.show(self.gpu_state)

    # -- navigation ------------------------------------------------------------------

    def open_session(self, session_id: int) -> None:
        """Show the session; if its view is already in the stack, go back to that one."""
        for screen in self.screen_stack:
            if isinstance(screen, SessionScreen) and screen.session_id == session_id:
                while self.screen is not screen:
                    self.pop_screen()
                return
        self.push_screen(SessionScreen(session_id))

    def show_projects(self) -> None:
        while len(self.screen_stack) > 2 and not isinstance(self.screen, ProjectsScreen):
            self.pop_screen()

    def new_project(self) -> None:
        from posegen_tui.screens.new_project import NewProjectScreen

        def created(project_id: int | None) -> None:
            if project_id is not None:
                self.notify(f"project {project_id} created; N makes its first session")
                if isinstance(self.screen, ProjectsScreen):
                    self.screen.select_when_shown(row_key("project", project_id))

        self.push_screen(NewProjectScreen(), created)

    def new_session(self, project: dict[str, Any]) -> None:
        from posegen_tui.screens.new_session import NewSessionScreen

        def created(session_id: int | None) -> None:
            if session_id is not None:
                self.notify(f"session {session_id} created; press s to start it")
                self.open_session(session_id)

        self.push_screen(NewSessionScreen(project), created)

    def action_gpu(self) -> None:
        if not isinstance(self.screen, GpuScreen):
            self.push_screen(GpuScreen())

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    # -- a vanished terminal ---------------------------------------------------------

    def _watch_hangup(self) -> None:
        """SSH dropped or the terminal closed: leave at once (workers keep running in
        their own process sessions); never spin on a dead tty."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGHUP, signal.SIGTERM):
            loop.add_signal_handler(sig, self._hang_up, 128 + sig)

    def _hang_up(self, code: int) -> None:
        # Restoring a terminal that is gone can block: give exit() a moment, then go.
        timer = threading.Timer(3.0, os._exit, args=(code,))
        timer.daemon = True
        timer.start()
        self.exit(code)
