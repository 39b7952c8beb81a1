"""A label and a one-line input side by side, the rows of the forms."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Input, Label


class FormInput(Input):
    """An input whose cursor blinks unless the app turned blinking off (snapshots)."""

    def on_mount(self) -> None:
        self.cursor_blink = bool(getattr(self.app, "blink", True))


class FormRow(Horizontal):
    def __init__(self, label: str, key: str, value: str = "", placeholder: str = "") -> None:
        super().__init__(classes="form-row")
        self.label, self.key = label, key
        self.value, self.placeholder = value, placeholder

    def compose(self) -> ComposeResult:
        yield Label(self.label, classes="form-label")
        yield FormInput(self.value, placeholder=self.placeholder, id=f"field-{self.key}",
                        compact=True)
