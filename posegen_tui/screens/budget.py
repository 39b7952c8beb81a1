"""`b`: past chunks' budget vs peak VRAM vs s/step, and a suggested -p for a GPU's free memory."""

from __future__ import annotations

from functools import partial

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Label, Static

from posegen_tui import fmt
from posegen_tui.app_protocol import UsesApp
from posegen_tui.data.loaders import BudgetData, load_budget
from posegen_tui.data.tuning import MARGIN, suggest
from posegen_tui.runner import ReceivesResults
from posegen_tui.safe_text import printable
from posegen_tui.widgets.form_row import FormInput


class BudgetScreen(UsesApp, ReceivesResults, Screen[None]):
    BINDINGS = [Binding("escape", "back", "back"),
                Binding("left_square_bracket", "gpu(-1)", "prev GPU"),
                Binding("right_square_bracket", "gpu(1)", "next GPU")]

    def __init__(self, project_id: int) -> None:
        super().__init__()
        self.project_id = project_id
        self.data: BudgetData | None = None
        self.gpu_pos = 0
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Static(id="budget-title")
        yield DataTable(id="budget-table", cursor_type="row")
        with Horizontal(id="budget-free"):
            yield Label("free GiB", classes="form-label")
            yield FormInput(placeholder="GPU memory to fill", id="free-gib", compact=True)
            yield Static(id="budget-gpu")
        yield Static(id="budget-suggestion")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for name in ("session", "chunk", "role", "-p", "peak torch", "peak NVML", "s/step"):
            table.add_column(name)
        table.focus()
        self.papp.runner.submit(self, f"budget-{self.project_id}",
                                partial(load_budget, self.papp.home, self.project_id),
                                self.apply)
        self._fill_from_gpu()

    def apply(self, data: BudgetData) -> None:
        self.data = data
        self.query_one("#budget-title", Static).update(Text.assemble(
            ("Budget tuning", "bold"), f" · project {printable(data.project['name'])} · "
            f"{len(data.points)} finished chunks in {data.sessions} sessions"))
        table = self.query_one(DataTable)
        table.clear()
        for p in data.points:
            table.add_row(str(p.session_id), str(p.chunk), p.role, p.budget_text,
                          fmt.gib(p.peak_torch), fmt.gib(p.peak_nvml),
                          "-" if p.seconds_per_step is None else f"{p.seconds_per_step:.2f}")
        self._suggest()
        self.loaded = True

    def _fill_from_gpu(self) -> None:
        state = self.papp.gpu_state
        label = self.query_one("#budget-gpu", Static)
        if not state.readings:
            label.update(Text(f"  no GPU readings ({state.unavailable or 'not read yet'}): "
                              "type the free memory", "dim"))
            return
        r = state.readings[self.gpu_pos % len(state.readings)]
        if r.used is None or r.total is None:
            label.update(Text(f"  GPU {r.index}: memory N/A", "dim"))
            return
        free = (r.total - r.used) / 2**30
        self.query_one("#free-gib", Input).value = f"{free:.1f}"
        label.update(Text(f"  GPU {r.index} {r.name}: {free:.1f} GiB free of "
                          f"{r.total / 2**30:.1f} ([ ] other GPU)", "dim"))

    def on_input_changed(self, _: Input.Changed) -> None:
        self._suggest()

    def _suggest(self) -> None:
        out = self.query_one("#budget-suggestion", Static)
        if self.data is None:
            return
        try:
            free = int(float(self.query_one("#free-gib", Input).value) * 2**30)
        except ValueError:
            free = None
        s = suggest(self.data.points, free)
        t = Text()
        if s.budget:
            t.append("suggested: ", "bold")
            t.append(f"-p {s.budget}", "bold green")
            t.append(f"  (keeps {MARGIN:.0%} of the free memory spare)\n")
        else:
            t.append("no suggestion\n", "bold")
        t.append(f"basis: {s.basis}", "dim")
        out.update(t)

    def action_gpu(self, delta: int) -> None:
        self.gpu_pos += delta
        self._fill_from_gpu()

    def action_back(self) -> None:
        self.app.pop_screen()
