"""`n`: a new project from a reference image, pose and hand clips (ready, or rendered from
a Sapiens folder and its driving video), a prompt (typed, or drafted by `posegen prompt`)
and a framing."""

from __future__ import annotations

from functools import partial

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Input, Label, Select, Static

from posegen_tui.data import actions
from posegen_tui.data.forms import DEFAULT_FRAMING, FRAMINGS
from posegen_tui.runner import ACTIONS, ResultReady
from posegen_tui.screens.form_screen import FormScreen
from posegen_tui.widgets.form_row import FormRow

DESCRIBE_KEY = "ctrl+g"


class NewProjectScreen(FormScreen):
    BINDINGS = [Binding(DESCRIBE_KEY, "describe", "describe image")]

    describing = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog form"):
            yield Label("New project", classes="dialog-title")
            with VerticalScroll(classes="form-fields"):
                yield FormRow("name", "name", placeholder="e.g. dance")
                yield FormRow("image", "image", placeholder="reference photo path")
                yield FormRow("prompt", "prompt",
                              placeholder="a woman in ... (or a prompt file path)")
                with Horizontal(classes="form-row"):
                    yield Label("", classes="form-label")
                    yield Button(f"Describe image ({DESCRIBE_KEY})", id="describe",
                                 compact=True)
                yield FormRow("pose", "pose", placeholder="pose video path (OpenPose style)")
                yield FormRow("hand", "hand", placeholder="hand video path")
                yield FormRow("sapiens", "sapiens",
                              placeholder="or: Sapiens folder (pose.pkl, normal.npy, seg.npy)")
                yield FormRow("driving", "driving",
                              placeholder="and its driving video (clips get prepared)")
                with Horizontal(classes="form-row"):
                    yield Label("framing", classes="form-label")
                    yield Select([(f, f) for f in FRAMINGS], value=DEFAULT_FRAMING,
                                 allow_blank=False, id="field-framing", compact=True)
            yield Static(id="form-errors", classes="form-errors")
            yield Static(f"Enter or ctrl+s creates · {DESCRIBE_KEY} drafts the prompt from "
                         "the image · Esc cancels · clips: pose + hand, or sapiens + driving · "
                         "framing picks the sessions' default -s/-b", classes="form-hint")

    def action_submit(self) -> None:
        values = self.values()
        values["framing"] = str(self.query_one("#field-framing", Select).value)
        self.run_create("new-project", partial(actions.create_project, self.papp.home, values,
                                               self._progress_from_worker))

    def _progress_from_worker(self, line: str) -> None:
        # Called on the worker thread; a screen that is gone never gets the message.
        self.post_message(ResultReady(line, self._progress))

    def _progress(self, line: str) -> None:
        if self.busy:
            self.show_problems([line], style="italic")

    # -- describe image ----------------------------------------------------------------

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "describe":
            event.stop()
            self.action_describe()

    def action_describe(self) -> None:
        if self.describing or self.busy:
            return
        image = self.query_one("#field-image", Input).value
        call = partial(actions.describe, self.papp.home, image)
        if self.papp.runner.submit(self, "describe-image", call, self._described,
                                   group=ACTIONS, on_error=self._describe_failed):
            self.describing = True
            self.show_problems(["describing the image (posegen prompt; loading the model "
                                "takes a while)..."], style="italic")

    def _described(self, text: str) -> None:
        self.describing = False
        self._set_prompt(text)
        self.show_problems(["prompt drafted from the image: check and edit it"],
                           style="italic")

    def _describe_failed(self, error: BaseException) -> None:
        self.describing = False
        output = getattr(error, "output", "")
        if output and self.is_attached:
            # a draft the engine refused (e.g. it names no subject): edit it here
            self._set_prompt(output)
        self.show_problems([f"describe image: {error}"])

    def _set_prompt(self, text: str) -> None:
        field = self.query_one("#field-prompt", Input)
        field.value = " ".join(text.split())
        field.focus()
        field.cursor_position = 0
