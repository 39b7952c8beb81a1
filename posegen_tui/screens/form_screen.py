"""Shared shape of the create forms: rows of inputs, problems listed, Enter submits."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from posegen_tui.app_protocol import UsesApp
from posegen_tui.data.forms import FormError
from posegen_tui.runner import ACTIONS, ReceivesResults

FIELDS_MAX = 16  # rows of input fields shown at once (the list scrolls)
FIELDS_MIN = 3


class FormScreen(UsesApp, ReceivesResults, ModalScreen[int | None]):
    BINDINGS = [Binding("escape", "cancel", "cancel"),
                Binding("ctrl+s", "submit", "create")]

    busy = False

    def values(self) -> dict[str, str]:
        return {inp.id.removeprefix("field-"): inp.value for inp in self.query(Input)
                if inp.id and inp.id.startswith("field-")}

    def on_input_submitted(self, _: Input.Submitted) -> None:
        self.action_submit()

    def run_create(self, key: str, call: Callable[[], int]) -> None:
        if self.busy:
            return
        self.busy = True
        self.show_problems(["checking…"], style="italic")
        self.papp.runner.submit(self, key, call, self._created, group=ACTIONS,
                                on_error=self._failed)

    def _created(self, ident: int) -> None:
        self.busy = False
        self.dismiss(ident)

    def _failed(self, error: BaseException) -> None:
        self.busy = False
        problems = error.problems if isinstance(error, FormError) else [str(error)]
        self.show_problems(problems)

    def show_problems(self, problems: list[str], style: str = "bold red") -> None:
        if not self.is_attached:
            return  # cancelled while its work ran
        text = Text()
        for p in problems:
            text.append(f"{'' if style != 'bold red' else '! '}{p}\n", style)
        errors = self.query_one("#form-errors", Static)
        errors.update(text)
        self._fit(errors, problems)

    def _fit(self, errors: Static, problems: list[str]) -> None:
        """Keep every problem and the hint line on screen: the fields' list gives up rows
        (it scrolls) for the problems' lines, down to a few fields."""
        width = max(20, (errors.size.width or 74) - 1)
        lines = sum(-(-(len(p) + 2) // width) for p in problems)
        # Border 2, title 1 + margin 1, problems' margin 1, the hint 1.
        room = self.app.size.height - 6
        fields = max(FIELDS_MIN, min(FIELDS_MAX, room - lines))
        errors.styles.max_height = max(1, room - fields)
        for box in self.query(".form-fields"):
            box.styles.max_height = fields

    def action_submit(self) -> None:
        raise NotImplementedError

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_mount(self) -> None:
        first = self.query(Input).first()
        first.focus()
