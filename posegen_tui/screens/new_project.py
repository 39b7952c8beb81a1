"""`n`: a new project from a reference image, pose and hand clips, a prompt and a framing."""

from __future__ import annotations

from functools import partial

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Label, Select, Static

from posegen_tui.data import actions
from posegen_tui.data.forms import DEFAULT_FRAMING, FRAMINGS
from posegen_tui.screens.form_screen import FormScreen
from posegen_tui.widgets.form_row import FormRow


class NewProjectScreen(FormScreen):
    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog form"):
            yield Label("New project", classes="dialog-title")
            with VerticalScroll(classes="form-fields"):
                yield FormRow("name", "name", placeholder="e.g. dance")
                yield FormRow("image", "image", placeholder="reference photo path")
                yield FormRow("pose", "pose", placeholder="pose video path (OpenPose style)")
                yield FormRow("hand", "hand", placeholder="hand video path")
                yield FormRow("prompt", "prompt",
                              placeholder="a woman in ... (or a prompt file path)")
                with Horizontal(classes="form-row"):
                    yield Label("framing", classes="form-label")
                    yield Select([(f, f) for f in FRAMINGS], value=DEFAULT_FRAMING,
                                 allow_blank=False, id="field-framing", compact=True)
            yield Static(id="form-errors", classes="form-errors")
            yield Static("Enter or ctrl+s creates · Esc cancels · framing picks the "
                         "sessions' default -s/-b", classes="form-hint")

    def action_submit(self) -> None:
        values = self.values()
        values["framing"] = str(self.query_one("#field-framing", Select).value)
        self.run_create("new-project", partial(actions.create_project, self.papp.home, values))
