"""The session view: chunk timeline, selected chunk, thumbnails, GPU, events and log."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer

from posegen_tui.app_protocol import UsesApp
from posegen_tui.coalesce import Coalescer
from posegen_tui.data import actions
from posegen_tui.data.loaders import SessionData, load_session
from posegen_tui.runner import ACTIONS, ReceivesResults
from posegen_tui.screens.confirm import ConfirmScreen
from posegen_tui.screens.retry import RetryScreen
from posegen_tui.widgets.activity_log import ActivityLog
from posegen_tui.widgets.chunk_details import ChunkDetails
from posegen_tui.widgets.chunk_timeline import ChunkTimeline
from posegen_tui.widgets.demo_banner import DemoBanner
from posegen_tui.widgets.gpu_panel import GpuPanel
from posegen_tui.widgets.session_header import SessionHeader
from posegen_tui.widgets.thumbnail_strip import ThumbnailStrip

POLL_S = 0.5


@dataclass(frozen=True)
class SessionAction:
    """One key of the session screen: its footer label and, for what it does to the
    session, its line in the command palette ("<verb> session N", help and key).

    Adding an action is a command-layer function, its CLI command and one row here
    with the screen's ``action_<name>`` method that calls it.
    """

    key: str
    action: str  # the screen's action_<action> (or an app action: "app.gpu")
    label: str
    verb: str = ""  # empty: not a palette command of this session
    help: str = ""
    show: bool = True

    def binding(self) -> Binding:
        return Binding(self.key, self.action, self.label, show=self.show)


SESSION_ACTIONS = (
    SessionAction("s", "start", "start", "Start", "start workers"),
    SessionAction("p", "pause", "pause", "Pause", "pause at the next step boundary"),
    SessionAction("r", "resume", "resume", "Resume", "continue after pause/stop/crash"),
    SessionAction("x", "stop", "stop", "Stop", "stop at the next step boundary"),
    SessionAction("X", "stop_now", "stop now", "Stop now:",
                  "kill the workers at once, keep finished work", show=False),
    SessionAction("t", "retry", "retry", "Retry selected chunk of", "with a new seed"),
    # Off the footer so that it fits 80 columns with esc and q; ? and ctrl+p list them.
    # (The last worker merges by itself; m is for a merge after a retry or a crash.)
    SessionAction("m", "merge", "merge", "Merge", "join the chunks into video.mp4",
                  show=False),
    SessionAction("c", "clear_cache", "cache", "Clear cache of", "free unneeded files",
                  show=False),
    SessionAction("l", "log", "log", "Log of", "events and worker logs in full, followed "
                  "live, searchable", show=False),
    SessionAction("v", "copy_video", "video", "Copy video path of",
                  "the merged video's path to the clipboard", show=False),
    SessionAction("o", "play", "play", "Play video of",
                  "the selected chunk's, else the merged one", show=False),
    SessionAction("a", "anchor", "anchor", "Choose the anchor from preview",
                  "its base chunks side by side; Enter starts the full run", show=False),
    SessionAction("g", "app.gpu", "GPU", show=False),
    SessionAction("b", "budget", "budget", "Budget tuning for", "peak VRAM vs -p",
                  show=False),
)


class SessionScreen(UsesApp, ReceivesResults, Screen[None]):
    BINDINGS = [
        Binding("question_mark", "app.help", "help", key_display="?"),
        *(a.binding() for a in SESSION_ACTIONS),
        Binding("escape", "back", "back"),
        Binding("left", "select(-1)", "prev chunk", show=False, priority=True),
        Binding("right", "select(1)", "next chunk", show=False, priority=True),
        Binding("home", "jump(False)", "first chunk", show=False),
        Binding("end", "jump(True)", "last chunk", show=False),
    ]

    def __init__(self, session_id: int) -> None:
        super().__init__()
        self.session_id = session_id
        self.data: SessionData | None = None
        self.loaded = False  # the first snapshot is on screen (tests wait for it)
        self.coalescer: Coalescer[SessionData] = Coalescer(self, self.apply)

    def compose(self) -> ComposeResult:
        yield SessionHeader(id="session-header")
        yield DemoBanner(id="demo-banner")
        yield ChunkTimeline(id="timeline")
        with Horizontal(id="session-body"):
            with VerticalScroll(id="details-scroll", can_focus=False):
                yield ChunkDetails(id="details")
            yield ThumbnailStrip(id="thumbs")
            yield GpuPanel(id="session-gpu")
        yield ActivityLog(id="activity")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#demo-banner").display = False
        self.query_one(ChunkTimeline).focus()
        self.set_interval(self.papp.poll_s, self.poll)
        self.poll()
        self.papp.refresh_gpu_panels()

    # -- reading ---------------------------------------------------------------------

    @property
    def selected(self) -> int | None:
        return self.query_one(ChunkTimeline).selected

    def poll(self) -> None:
        call = partial(load_session, self.papp.home, self.session_id, self.selected)
        self.papp.runner.submit(self, f"session-{self.session_id}", call, self.coalescer.push)

    def apply(self, data: SessionData) -> None:
        self.data = data
        self.query_one(SessionHeader).show(data)
        self.query_one("#demo-banner").display = data.tiny_ckpt
        timeline = self.query_one(ChunkTimeline)
        timeline.show(data.chunks, data.loaded_at)
        self._show_selected()
        self.query_one(ActivityLog).show(data)
        self.loaded = True

    def _show_selected(self) -> None:
        if self.data is None:
            return
        idx = self.selected
        self.query_one(ChunkDetails).show(self.data, idx)
        files = self.data.files if self.data.files and self.data.files.idx == idx else None
        self.query_one(ThumbnailStrip).show(files)

    def on_chunk_timeline_selected(self, message: ChunkTimeline.Selected) -> None:
        self._show_selected()
        if self.data is not None and (self.data.files is None
                                      or self.data.files.idx != message.idx):
            self.poll()  # fetch the newly selected chunk's files and frames

    # -- keys ------------------------------------------------------------------------

    def action_select(self, delta: int) -> None:
        self.query_one(ChunkTimeline).move(delta)

    def action_jump(self, last: bool) -> None:
        self.query_one(ChunkTimeline).jump(last)

    def action_back(self) -> None:
        self.app.pop_screen()

    def _act(self, what: str, call: Callable[..., str], *args: object) -> None:
        home = self.papp.home
        self.notify(f"{what}…", timeout=2)
        self.papp.runner.submit(self, f"{what}-{self.session_id}",
                                partial(call, home, self.session_id, *args),
                                self._done, group=ACTIONS)

    def _done(self, message: str) -> None:
        self.notify(message)
        self.poll()

    def action_start(self) -> None:
        self._act("start", actions.start)

    def action_resume(self) -> None:
        self._act("resume", actions.resume)

    def action_pause(self) -> None:
        self._act("pause", actions.request, "pause")

    def action_stop(self) -> None:
        self._act("stop", actions.request, "stop")

    def action_stop_now(self) -> None:
        self._confirmed(
            "stop now", actions.stop_now, f"Stop session {self.session_id} now?",
            "Kills its workers at once, as kill -9 would, whatever they are doing (loading "
            "models, encoding). Finished chunks and saved steps are kept; r resumes.")

    def action_merge(self) -> None:
        self._act("merge", actions.merge)

    def action_clear_cache(self) -> None:
        self._confirmed(
            "clear cache", actions.clear_cache,
            f"Clear the cache of session {self.session_id}?",
            "Deletes files no unfinished chunk still needs (the anchor's K/V once every "
            "base chunk is done, finished chunks' resume states). Frames are kept.")

    def _confirmed(self, what: str, call: Callable[..., str], title: str, text: str) -> None:
        """``call`` as ``_act`` does, once the user says yes."""
        def answer(yes: bool | None) -> None:
            if yes:
                self._act(what, call)

        self.app.push_screen(ConfirmScreen(title, text), answer)

    def action_retry(self) -> None:
        data = self.data
        chunk = data.chunk(self.selected) if data else None
        if data is None or chunk is None or chunk.planned:
            self.notify("no stored chunk selected: start the session first", severity="warning")
            return

        def answer(result: tuple[int | None] | None) -> None:
            if result is not None:
                self._act("retry", actions.retry, chunk.idx, result[0])

        self.app.push_screen(RetryScreen(self.session_id, chunk, data.session.get("seed")),
                             answer)

    def action_log(self) -> None:
        from posegen_tui.screens.log import LogScreen

        self.app.push_screen(LogScreen(self.session_id))

    def action_copy_video(self) -> None:
        """The merged video's path: shown, and copied with OSC 52 (most terminals, also
        over SSH, put it on the local clipboard)."""
        video = self.data.video_path if self.data is not None else None
        if video is None:
            self.notify("no video yet: it is written when every chunk is done (m merges)",
                        severity="warning")
            return
        self.app.copy_to_clipboard(video)
        self.notify(f"copied: {video}")

    def action_play(self) -> None:
        from posegen_tui.data.playback import choose
        from posegen_tui.screens.player import PlayerScreen

        if self.data is None:
            return
        target = choose(self.data, self.selected)
        if isinstance(target, str):
            self.notify(target, severity="warning")
        else:
            self.app.push_screen(PlayerScreen(target))

    def action_anchor(self) -> None:
        from posegen_tui.screens.anchor import AnchorScreen

        if self.data is not None and self.data.session.get("kind") != "preview":
            self.notify("a chooses the anchor from a preview session; make one with ctrl+r "
                        "in the new-session form (or `posegen session new PROJECT --preview`)",
                        severity="warning")
            return
        self.app.push_screen(AnchorScreen(self.session_id))

    def action_budget(self) -> None:
        from posegen_tui.screens.budget import BudgetScreen

        if self.data is not None:
            self.app.push_screen(BudgetScreen(self.data.project["id"]))
