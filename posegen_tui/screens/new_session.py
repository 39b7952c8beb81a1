"""`N`/`S`: a new session of a project with the spec's defaults, -s/-b from its framing."""

from __future__ import annotations

from functools import partial

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Label, Static

from posegen_tui.data import actions
from posegen_tui.data.forms import CKPT_ENV, session_defaults
from posegen_tui.safe_text import plain
from posegen_tui.screens.form_screen import FormScreen
from posegen_tui.widgets.form_row import FormRow

FIELDS = [  # (label, key, placeholder)
    ("checkpoint", "ckpt", f"checkpoint dir (default ${CKPT_ENV})"),
    ("name", "name", "optional"),
    ("device", "device", "cpu, cuda or cuda:N"),
    ("gpus", "gpus", "GPU indices for workers, e.g. 0,1 (blank: device)"),
    ("budget -p", "budget", "DiT params on the GPU: 4e9, 4G or none"),
    ("steps", "steps", ""), ("cfg", "cfg", ""), ("seed", "seed", ""),
    ("height", "height", "multiple of 16"), ("width", "width", "multiple of 16"),
    ("frames N", "frames", "1 mod 4"), ("head Hd", "head", "1 mod 4"),
    ("tail Tl", "tail", "0 mod 4"), ("anchor", "anchor", "even chunk index"),
    ("share -s", "share_steps", "START END"), ("share -b", "share_blocks", "START END"),
]


class NewSessionScreen(FormScreen):
    BINDINGS = [Binding("ctrl+r", "preview", "preview first")]

    def __init__(self, project: dict) -> None:
        super().__init__()
        self.project = project

    def compose(self) -> ComposeResult:
        defaults = session_defaults(self.project)
        framing = self.project.get("framing") or "half-body"
        with Vertical(classes="dialog form"):
            yield Label(plain(f"New session of {self.project['name']} ({framing})"),
                        classes="dialog-title")
            with VerticalScroll(classes="form-fields"):
                for label, key, hint in FIELDS:
                    yield FormRow(label, key, defaults.get(key, ""), placeholder=hint)
            yield Static(id="form-errors", classes="form-errors")
            with Horizontal(classes="form-actions"):
                yield Static("Enter/ctrl+s creates (s starts it) · Esc cancels",
                             classes="form-hint")
                # The same plan, cheaper: for a mouse as for ctrl+r.
                yield Button("Preview first ^r", id="preview", compact=True)

    def action_submit(self) -> None:
        call = partial(actions.create_session, self.papp.home, self.project["id"],
                       self.values())
        self.run_create("new-session", call)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "preview":
            self.action_preview()

    def action_preview(self) -> None:
        """The same plan at half the size and 10 steps (engine/preview.py); a of its
        session chooses the anchor and starts the full run."""
        call = partial(actions.create_session, self.papp.home, self.project["id"],
                       self.values(), preview=True)
        self.run_create("new-session", call)
