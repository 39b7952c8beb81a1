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

    # A class, not :focus-within: Textual restyles the row itself when focus moves, not
    # its label, so a focus-within rule on the label kept marking the field left behind.
    def on_descendant_focus(self) -> None:
        self.add_class("-focused")

    def on_descendant_blur(self) -> None:
        self.remove_class("-focused")

    def compose(self) -> ComposeResult:
        yield Label(self.label, classes="form-label")
        yield FormInput(self.value, placeholder=self.placeholder, id=f"field-{self.key}",
                        compact=True)
