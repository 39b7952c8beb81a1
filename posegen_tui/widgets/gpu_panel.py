"""Per device: used/total memory, utilisation, temperature, a memory history plot, and
beside the device totals the workers' own numbers from the store (torch allocated and
peak, the session's budget). Without NVML it says so and still lists the workers.

When the store holds GPU samples of other hosts (a Ray cluster's nodes), a "nodes" list
shows each host's devices from their latest sample, with the workers running there;
with only this host's samples the panel is as before."""

from __future__ import annotations

from dataclasses import dataclass, field

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
NODE_BAR = 10
STALE_S = 30.0  # a node's latest sample older than this shows its age


def memory_bar(used: int | None, total: int | None, width: int = BAR,
               label: str = "mem ") -> Text:
    if used is None or not total:
        return Text(f"{label}N/A", "dim")
    k = round(width * used / total)
    t = Text(f"{label}[")
    t.append("#" * k, "bold yellow" if used / total > 0.9 else "green")
    t.append("-" * (width - k), "dim")
    t.append(f"] {used / 2**30:.1f}/{total / 2**30:.1f} GiB ({used / total:.0%})")
    return t


def _num(value: float | None, unit: str) -> str:
    return "N/A" if value is None else f"{value:.0f}{unit}"


def worker_line(use: WorkerUse, with_host: bool = False) -> Text:
    """Two lines: whose worker, then its own numbers beside the device totals above."""
    w = use.worker
    where = f"{w.get('host')} {w.get('device')}" if with_host else w.get("device")
    t = Text(f"  worker {w['id']} on {where} · session {use.session_id} "
             f"{use.project} · -p {use.budget or 'none'}\n")
    t.append(f"  torch {fmt.gib(w.get('torch_allocated'))} (peak {fmt.gib(w.get('torch_peak'))})"
             f" · NVML {fmt.gib(w.get('nvml_used'))}", "bold")
    return t


NodeKey = tuple[str, int]


@dataclass
class Placement:
    """Where each live worker is listed: on this host's device card, under its node's
    line, or in the note; each worker once."""

    cards: dict[int, list[WorkerUse]] = field(default_factory=dict)
    nodes: dict[NodeKey, list[WorkerUse]] = field(default_factory=dict)
    rest: list[WorkerUse] = field(default_factory=list)


def show_nodes(state: GpuState) -> bool:
    """The node list appears once samples come from a host other than this one."""
    return any(n["host"] != state.host for n in state.nodes)


def place_workers(state: GpuState) -> Placement:
    """A node's GPU is found by the worker id its latest sample carries (under Ray a
    worker's ``cuda:0`` may be the node's GPU 3), else by host and device index."""
    multi = show_nodes(state)
    nodes = state.nodes if multi else []
    node_keys = {(n["host"], n["device_index"]) for n in nodes}
    sampled = {n["worker_id"]: (n["host"], n["device_index"]) for n in nodes
               if n.get("worker_id") is not None}
    out = Placement()
    for use in state.workers:
        index = device_index(use.worker.get("device") or "")
        host = use.worker.get("host") or ""
        local = not multi or host == state.host
        key = sampled.get(use.worker["id"], (host, index))
        if local and index is not None and state.reading(index) is not None:
            out.cards.setdefault(index, []).append(use)
        elif key in node_keys:
            out.nodes.setdefault(key, []).append(use)
        elif state.unavailable or index is None or multi:
            out.rest.append(use)
    return out


def nodes_text(state: GpuState, placement: Placement) -> Text:
    """`node-a GPU 0 [####------] 31.2/80.0 GiB (39%)` per host and device (NVML index,
    as on the device cards) from the latest sample (its age when older than STALE_S),
    then the workers running there."""
    t = Text("nodes", "bold")
    t.append(" · latest memory sample per device", "dim")
    width = max(len(n["host"]) for n in state.nodes)
    for n in state.nodes:
        t.append("\n")
        t.append(f"{n['host']:<{width}} GPU {n['device_index']} ", "bold")
        t.append_text(memory_bar(n.get("used"), n.get("total"), NODE_BAR, ""))
        if state.read_at - n["t"] > STALE_S:
            t.append(f" · {fmt.age(n['t'], state.read_at)} ago", "dim")
        for use in placement.nodes.get((n["host"], n["device_index"]), []):
            t.append("\n")
            t.append_text(worker_line(use))
    return t


class DeviceCard(Vertical):
    def __init__(self, index: int) -> None:
        super().__init__(classes="device-card")
        self.index = index

    def compose(self) -> ComposeResult:
        yield Static(classes="device-text")
        yield MemoryPlot(classes="device-plot")
        yield Static(classes="device-caption")

    def show(self, r: GpuReading, state: GpuState, mine: list[WorkerUse]) -> None:
        head = Text.assemble((f"GPU {r.index} ", "bold"), r.name,
                             f"  util {_num(r.util, '%')}  temp {_num(r.temp, ' C')}\n")
        head.append_text(memory_bar(r.used, r.total))
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
        nodes = Static(classes="gpu-nodes")
        nodes.display = False  # until samples of another host come
        yield nodes

    def show(self, state: GpuState) -> None:
        indices = tuple(r.index for r in state.readings)
        if indices != self._indices:
            self.shown = False
            self._indices = indices
            self.remove_children(DeviceCard)
            self.mount_all([DeviceCard(i) for i in indices])
            self.call_after_refresh(self.show, state)
            return
        placement = place_workers(state)
        for card in self.query(DeviceCard):
            reading = state.reading(card.index)
            if reading is not None:
                card.show(reading, state, placement.cards.get(card.index, []))
        note = self._note(state, placement)
        widget = self.query_one(".gpu-note", Static)
        widget.update(note)
        widget.display = bool(note.plain)
        nodes = self.query_one(".gpu-nodes", Static)
        nodes.display = state.loaded and show_nodes(state)
        if nodes.display:
            nodes.update(nodes_text(state, placement))
        self.shown = state.loaded

    @staticmethod
    def _note(state: GpuState, placement: Placement) -> Text:
        if not state.loaded:
            return Text("reading GPUs…", "dim")
        multi = show_nodes(state)
        t = Text()
        if state.unavailable:
            t.append(f"No GPU data{' on this host' if multi else ''}: {state.unavailable}.\n",
                     "bold")
            t.append("Everything else works; the workers' own numbers come from the store. "
                     "To see this panel without a GPU: POSEGEN_TUI_GPU=fake posegen-tui",
                     "dim")
        if placement.rest:
            label = "other workers:" if multi else "workers:"
            t.append(f"\n{label}" if t else label)
            for use in placement.rest:
                t.append("\n")
                t.append_text(worker_line(use, with_host=multi))
        elif state.unavailable and not placement.nodes:
            t.append("\nno live workers")
        return t
