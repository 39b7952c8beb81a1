"""Per device: used/total memory, utilisation, temperature, a memory history plot, and
beside the device totals the workers' own numbers from the store (torch allocated and
peak, the session's budget). Without NVML it says so and still lists the workers."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from engine.gpu_info import device_index
from posegen_tui import fmt
from posegen_tui.data.loaders import WorkerUse
from posegen_tui.gpu.source import GpuReading
from posegen_tui.gpu.state import GpuState
from posegen_tui.widgets.memory_plot import MemoryPlot

BAR = 20


def memory_bar(used: int | None, total: int | None) -> Text:
    if used is None or not total:
        return Text("mem N/A", "dim")
    k = round(BAR * used / total)
    t = Text("mem [")
    t.append("#" * k, "bold yellow" if used / total > 0.9 else "green")
    t.append("-" * (BAR - k), "dim")
    t.append(f"] {used / 2**30:.1f}/{total / 2**30:.1f} GiB ({used / total:.0%})")
    return t


def _num(value: float | None, unit: str) -> str:
    return "N/A" if value is None else f"{value:.0f}{unit}"


def worker_line(use: WorkerUse) -> Text:
    """Two lines: whose worker, then its own numbers beside the device totals above."""
    w = use.worker
    t = Text(f"  worker {w['id']} on {w.get('device')} · session {use.session_id} "
             f"{use.project} · -p {use.budget or 'none'}\n")
    t.append(f"  torch {fmt.gib(w.get('torch_allocated'))} (peak {fmt.gib(w.get('torch_peak'))})"
             f" · NVML {fmt.gib(w.get('nvml_used'))}", "bold")
    return t


class DeviceCard(Vertical):
    def __init__(self, index: int) -> None:
        super().__init__(classes="device-card")
        self.index = index

    def compose(self) -> ComposeResult:
        yield Static(classes="device-text")
        yield MemoryPlot(classes="device-plot")
        yield Static(classes="device-caption")

    def show(self, r: GpuReading, state: GpuState) -> None:
        head = Text.assemble((f"GPU {r.index} ", "bold"), r.name,
                             f"  util {_num(r.util, '%')}  temp {_num(r.temp, ' C')}\n")
        head.append_text(memory_bar(r.used, r.total))
        mine = [u for u in state.workers if device_index(u.worker.get("device") or "") == r.index]
        for use in mine:
            head.append("\n")
            head.append_text(worker_line(use))
        self.query_one(".device-text", Static).update(head)
        series = state.history.series(r.index)
        self.query_one(".device-plot", MemoryPlot).show(series, r.total)
        caption = (f"last {fmt.eta(state.history.span(r.index))}, scale 0-{fmt.gib(r.total)}: "
                   f"min {fmt.gib(min(series))} max {fmt.gib(max(series))}"
                   if series else "memory history: no samples yet")
        self.query_one(".device-caption", Static).update(Text(caption, "dim"))


class GpuPanel(VerticalScroll):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "GPU"
        self._indices: tuple[int, ...] = ()
        self.shown = False  # the latest state is on screen (tests wait for it)

    def compose(self) -> ComposeResult:
        yield Static("reading GPUs…", classes="gpu-note")

    def show(self, state: GpuState) -> None:
        indices = tuple(r.index for r in state.readings)
        if indices != self._indices:
            self.shown = False
            self._indices = indices
            self.remove_children(DeviceCard)
            self.mount_all([DeviceCard(i) for i in indices])
            self.call_after_refresh(self.show, state)
            return
        for card in self.query(DeviceCard):
            reading = state.reading(card.index)
            if reading is not None:
                card.show(reading, state)
        note = self._note(state)
        widget = self.query_one(".gpu-note", Static)
        widget.update(note)
        widget.display = bool(note.plain)
        self.shown = state.loaded

    @staticmethod
    def _note(state: GpuState) -> Text:
        if not state.loaded:
            return Text("reading GPUs…", "dim")
        t = Text()
        if state.unavailable:
            t.append(f"No GPU data: {state.unavailable}.\n", "bold")
            t.append("Everything else works; the workers' own numbers come from the store.",
                     "dim")
        others = [u for u in state.workers
                  if state.unavailable or device_index(u.worker.get("device") or "") is None]
        if others:
            t.append("\nworkers:" if t else "workers:")
            for use in others:
                t.append("\n")
                t.append_text(worker_line(use))
        elif state.unavailable:
            t.append("\nno live workers")
        return t
