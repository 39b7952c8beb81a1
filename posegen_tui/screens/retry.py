"""Retry a chunk: ask for an optional new seed before `posegen retry`."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from posegen_tui.data.chunk import Chunk
from posegen_tui.widgets.form_row import FormRow


class RetryScreen(ModalScreen[tuple[int | None] | None]):
    """Dismisses with (seed,) where seed None keeps the session seed, or None to cancel."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, session_id: int, chunk: Chunk, session_seed: int | None) -> None:
        super().__init__()
        self.session_id, self.chunk, self.session_seed = session_id, chunk, session_seed

    def compose(self) -> ComposeResult:
        c = self.chunk
        with Vertical(classes="dialog"):
            yield Label(f"Retry chunk {c.idx} ({c.role}) of session {self.session_id}",
                        classes="dialog-title")
            yield Static("It runs again from step 0; chunks that depend on it become stale "
                         "(~) and run again too. Enter to retry, Esc to cancel.",
                         classes="dialog-detail")
            yield FormRow("new seed", "seed", "",
                          placeholder=f"blank: keep seed {c.seed or self.session_seed}")
            yield Static("", id="retry-error", classes="form-errors")

    def on_mount(self) -> None:
        self.query_one("#field-seed", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            self.dismiss((None,))
            return
        try:
            self.dismiss((int(text),))
        except ValueError:
            self.query_one("#retry-error", Static).update(
                f"! seed {text!r} is not a whole number; leave it blank to keep the seed")

    def action_cancel(self) -> None:
        self.dismiss(None)
