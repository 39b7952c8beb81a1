"""The selected chunk: timings, s/step, peak VRAM, budget, seed, worker (id, host,
device), error, files."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from posegen_tui import fmt
from posegen_tui.data.chunk import Chunk
from posegen_tui.data.loaders import SessionData
from posegen_tui.widgets.status_style import glyph, style


def details_text(data: SessionData, c: Chunk) -> Text:
    """Short lines (the narrow layout gives this about 44 columns)."""
    s = data.session
    t = Text()
    t.append(f"chunk {c.idx} ", "bold")
    t.append(f"{c.role} ")
    t.append(f"{glyph(c.status)} {c.status}", style(c.status))
    t.append(f"\nframes {c.start}-{c.end} ({c.end - c.start})")
    if c.deps:
        t.append(f" · needs {', '.join(map(str, c.deps))}", "dim")
    if c.planned:
        t.append(f"\n{data.plan_note}", "italic")
    t.append(f"\nstep {c.step}/{c.steps or '?'} · {_rate(c.seconds_per_step)} · ")
    if c.status == "running":
        t.append(f"ETA {fmt.eta(c.eta(data.loaded_at))}", "bold")
        if c.idx in data.phases:  # loading, encoding, sampling, decoding, writing
            phase, seconds = data.phases[c.idx]
            t.append(f"\nnow {phase}, for {fmt.duration(seconds)}", "bold")
    else:
        t.append(f"took {fmt.duration(c.seconds)}")
    seed = f"{c.seed}" if c.seed is not None else f"{s.get('seed')} (session)"
    t.append(f"\nseed {seed} · -p {_budget(c, s)} · attempts {c.attempts}")
    t.append(f"\npeak VRAM torch {fmt.gib(c.peak_vram_torch)} · NVML {fmt.gib(c.peak_vram_nvml)}")
    t.append(f"\nstarted {fmt.clock_time(c.started_at)} · done {fmt.clock_time(c.finished_at)}")
    worker = next((w for w in data.workers if w["id"] == c.worker_id), None)
    if worker is not None:
        alive = "alive" if worker["alive"] else f"ended: {worker.get('end_reason')}"
        t.append(f"\nworker {worker['id']} {worker_place(worker)} · pid {worker['pid']} "
                 f"({alive})")
        if c.status == "running" and worker["alive"] and worker.get("torch_peak") is not None:
            w = worker  # the worker's live numbers: the chunk's own peaks come at its end
            t.append(f"\nnow: torch {fmt.gib(w.get('torch_allocated'))} · peak "
                     f"{fmt.gib(w.get('torch_peak'))} · NVML {fmt.gib(w.get('nvml_used'))}")
    elif c.worker_id is not None:
        t.append(f"\nworker {c.worker_id}")
    if c.error:
        t.append(f"\n! {c.error}", "bold red")
    files = data.files if data.files and data.files.idx == c.idx else None
    if files is not None:
        folder = f"chunks/{c.idx:03d}"
        listing = " · ".join(f"{name} {fmt.size(n)}" for name, n in files.files) or "none yet"
        t.append(f"\n{folder}: {listing}", "dim")
        if files.anchor_cache:
            n, size = files.anchor_cache
            t.append(f"\ncache/anchor: {n} files {fmt.size(size)}", "dim")
    return t


def worker_place(worker: dict) -> str:
    """Where a worker runs: host and device (``gpu-box cuda:0``), as it registered."""
    return " ".join(str(v) for v in (worker.get("host"), worker.get("device")) if v) or "?"


def _rate(sps: float | None) -> str:
    return "-- s/step" if sps is None else f"{sps:.2f} s/step"


def _budget(c: Chunk, session: dict) -> str:
    if c.budget not in (None, "", "None"):
        return str(c.budget)
    return str(session.get("budget") or "none")


class ChunkDetails(Static):
    def show(self, data: SessionData, idx: int | None) -> None:
        c = data.chunk(idx)
        self.update(details_text(data, c) if c else Text("select a chunk with ← →"))
