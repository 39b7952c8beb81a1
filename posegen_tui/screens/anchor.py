"""`a` on a preview: its base chunks side by side; Enter starts the full run anchored on
the selected one (`posegen session new --from-preview N --anchor K`, then start)."""

from __future__ import annotations

from functools import partial

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import HorizontalScroll
from textual.screen import Screen
from textual.widgets import Footer, Label, Static

from posegen_tui.app_protocol import UsesApp
from posegen_tui.data import actions
from posegen_tui.data.anchor_choice import AnchorChoice, load_anchor_choice
from posegen_tui.runner import ACTIONS, ReceivesResults
from posegen_tui.safe_text import plain
from posegen_tui.widgets.anchor_card import AnchorCard

EXPLAIN = ("bg: how much the background changes per frame outside the person (0-255 "
           "levels; the pose skeleton, grown, marks the person). Lower is stiller: base "
           "chunks copy the anchor's background.")


class AnchorScreen(UsesApp, ReceivesResults, Screen[None]):
    BINDINGS = [
        Binding("left", "move(-1)", "prev", priority=True),
        Binding("right", "move(1)", "next", priority=True),
        Binding("enter", "choose", "start full run"),
        Binding("escape", "back", "back"),
    ]

    def __init__(self, preview_id: int) -> None:
        super().__init__()
        self.preview_id = preview_id
        self.choice: AnchorChoice | None = None
        self.selected: int | None = None
        self.busy = False

    def compose(self) -> ComposeResult:
        yield Label(f"Anchor for the full run of preview {self.preview_id}", id="anchor-title",
                    classes="dialog-title")
        yield Static("", id="anchor-settings")
        yield HorizontalScroll(id="anchor-cards")
        yield Static(EXPLAIN, id="anchor-explain")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.set_interval(max(self.papp.poll_s, 1.0), self.poll)
        self.poll()

    def poll(self) -> None:
        self.papp.runner.submit(self, f"anchor-{self.preview_id}",
                                partial(load_anchor_choice, self.papp.home, self.preview_id),
                                self.apply)

    def apply(self, choice: AnchorChoice) -> None:
        old = self.choice
        self.choice = choice
        if self.selected is None or choice.candidate(self.selected) is None:
            self.selected = choice.suggested if choice.suggested is not None else (
                choice.candidates[0].idx if choice.candidates else None)
        f = choice.full
        self.query_one("#anchor-settings", Static).update(plain(
            choice.problem or f"{choice.project} ({choice.framing}): the full run is "
            f"{f.get('height')}x{f.get('width')}, {f.get('steps')} steps, -s "
            f"{' '.join(map(str, f.get('share_steps', [])))} -b "
            f"{' '.join(map(str, f.get('share_blocks', [])))}"))
        if old is None or _shown(old) != _shown(choice):
            self._cards()
        self._mark()

    def _cards(self) -> None:
        box = self.query_one("#anchor-cards", HorizontalScroll)
        box.remove_children()
        choice = self.choice
        if choice is None:
            return
        box.mount_all(AnchorCard(c, stillest=c.idx == choice.suggested,
                                 preview_anchor=c.idx == choice.anchor)
                      for c in choice.candidates)

    def _mark(self) -> None:
        for card in self.query(AnchorCard):
            on = card.candidate.idx == self.selected
            card.set_class(on, "-selected")
            if on:
                self.query_one("#anchor-cards", HorizontalScroll).scroll_to_widget(
                    card, animate=False)

    def action_move(self, delta: int) -> None:
        if self.choice is None or not self.choice.candidates:
            return
        order = [c.idx for c in self.choice.candidates]
        at = order.index(self.selected) if self.selected in order else 0
        self.selected = order[max(0, min(len(order) - 1, at + delta))]
        self._mark()

    def action_choose(self) -> None:
        if self.busy or self.selected is None or self.choice is None or self.choice.problem:
            return
        self.busy = True
        k = self.selected
        self.notify(f"creating the full run anchored on chunk {k}…", timeout=2)
        self.papp.runner.submit(
            self, f"full-from-{self.preview_id}",
            partial(actions.full_from_preview, self.papp.home, self.preview_id, k),
            partial(self._started, k), group=ACTIONS, on_error=self._failed)

    def _started(self, anchor: int, session_id: int) -> None:
        self.busy = False
        self.notify(f"session {session_id}: the full run, anchored on chunk {anchor}, started")
        self.app.pop_screen()
        self.papp.open_session(session_id)

    def _failed(self, error: BaseException) -> None:
        self.busy = False
        self.notify(str(error), severity="error", timeout=10)

    def action_back(self) -> None:
        self.app.pop_screen()


def _shown(choice: AnchorChoice) -> list[tuple[int, str, float | None]]:
    """What the cards show of a choice (frames change only with the status)."""
    return [(c.idx, c.status, c.motion) for c in choice.candidates]
