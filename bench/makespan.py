"""Makespan of one PoseGen session on G GPUs: an event-driven simulation (issue #7).

Pure Python + Pillow, no GPU. It schedules the chunks of a real chunk plan
(``engine.chunk_plan``: roles and ``dependencies(i)``) on G workers with the real
next-chunk policy (``sessions.scheduling.pick_chunk``), and compares it with the
release's three phases (anchor, then all base chunks, then all cond chunks, with a
barrier between phases and a new process, so a fresh DiT load, per phase).

Model
- A worker starts with no DiT loaded. Running a chunk whose DiT (anchor/base ->
  base DiT, cond -> cond DiT) is not the loaded one costs ``dit_load_s`` first; a
  load that replaces the other DiT is a *switch*.
- A chunk takes ``anchor_s``, ``base_s`` or ``cond_s`` by role; once every chunk is
  done one worker merges (``merge_s``).
- Whenever a worker is free it claims a chunk as a live worker does: the ready
  chunks (all dependencies finished) go to ``pick_chunk`` with its loaded DiT; free
  workers claim in id order. No prefetching: a DiT loads only once its chunk is
  claimed.
- Every schedule is checked: each chunk runs once, never before its dependencies
  finish, and a GPU never runs two things at once.

Times come from ``--times FILE`` (JSON: anchor_s, base_s, cond_s, dit_load_s,
merge_s, source); ``bench/chunk_times.json`` holds placeholders from ENGINE-SPEC
section 9 until the H100 bench numbers replace them.

    python bench/makespan.py [--times bench/chunk_times.json] [--out docs/img]

Writes ``makespan.json`` (every number and every bar) and ``makespan_gantt.png``
under ``--out`` and prints a markdown table last.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.chunk_plan import ChunkPlan, ChunkSpec, make_plan  # noqa: E402
from sessions.scheduling import dit_kind, pick_chunk  # noqa: E402

DEFAULT_TIMES = Path(__file__).with_name("chunk_times.json")
DEFAULT_FRAMES = 1896  # 31 chunks of 81 frames (21/20 overlaps) cover exactly 1896 frames
GPUS = (1, 2, 4, 8)
POLICIES = ("release", "deps")  # three phases with barriers | dependency-driven pick_chunk
POLICY_NAMES = {"release": "release: 3 phases + barriers",
                "deps": "dependency-driven (pick_chunk)"}
PNG_NAME = "makespan_gantt.png"
JSON_NAME = "makespan.json"


class ScheduleError(RuntimeError):
    """A simulated schedule broke a rule (dependency order, overlap, a chunk run twice)."""


@dataclass(frozen=True)
class Times:
    anchor_s: float
    base_s: float
    cond_s: float
    dit_load_s: float
    merge_s: float
    source: str = ""

    @classmethod
    def load(cls, path: Path | str) -> Times:
        raw = json.loads(Path(path).read_text())
        keys = ("anchor_s", "base_s", "cond_s", "dit_load_s", "merge_s")
        missing = [k for k in keys if k not in raw]
        if missing:
            raise SystemExit(f"{path}: missing {', '.join(missing)} (seconds)")
        values = {k: float(raw[k]) for k in keys}
        bad = [k for k, v in values.items() if v < 0]
        if bad:
            raise SystemExit(f"{path}: {', '.join(bad)} must be >= 0")
        return cls(**values, source=str(raw.get("source", "")))

    def chunk(self, role: str) -> float:
        return {"anchor": self.anchor_s, "base": self.base_s, "cond": self.cond_s}[role]


@dataclass(frozen=True)
class Bar:
    """One stretch of a GPU's time: a chunk, a DiT load or the merge."""

    gpu: int
    what: str  # anchor | base | cond | load | merge
    start: float
    end: float
    idx: int | None = None  # the chunk (for a load: the chunk it loads for)
    dit: str | None = None  # the DiT a chunk runs on / a load brings in


@dataclass
class Result:
    policy: str
    gpus: int
    bars: list[Bar]
    makespan: float
    work: float  # sum of chunk times: no loads, no merge
    loads: int
    switches: int
    bound: float = 0.0  # lower_bound(): no schedule in this model can beat it

    @property
    def ideal(self) -> float:
        """Total work / G: loads and the merge excluded, so a strict lower bound."""
        return self.work / self.gpus

    @property
    def busy(self) -> list[float]:
        out = [0.0] * self.gpus
        for b in self.bars:
            out[b.gpu] += b.end - b.start
        return out

    @property
    def idle(self) -> list[float]:
        """Per GPU: makespan minus the time it ran chunks, loads or the merge."""
        return [self.makespan - b for b in self.busy]

    def summary(self) -> dict:
        return {"policy": self.policy, "gpus": self.gpus, "makespan_s": self.makespan,
                "ideal_s": self.ideal, "ratio_to_ideal": self.makespan / self.ideal,
                "work_s": self.work, "lower_bound_s": self.bound, "dit_loads": self.loads,
                "dit_switches": self.switches,
                "busy_s": self.busy, "idle_s": self.idle,
                "bars": [asdict(b) for b in self.bars]}


def plan_for(frames: int = DEFAULT_FRAMES, num_chunks: int | None = None,
             anchor: int = 0) -> ChunkPlan:
    return make_plan(frames, ChunkSpec(), num_chunks=num_chunks, anchor=anchor)


def total_work(plan: ChunkPlan, times: Times) -> float:
    return sum(times.chunk(c.role) for c in plan.chunks)


def critical_path(plan: ChunkPlan, times: Times) -> float:
    """A lower bound on any makespan in this model (no prefetch).

    A cond chunk waits for a base chunk, which waits for the anchor (one load first);
    the first cond chunk a worker runs needs a load after its base neighbour is done.
    """
    cp = times.dit_load_s + times.anchor_s
    if plan.num_chunks > 1:
        cp += times.base_s + times.dit_load_s + times.cond_s
    return cp + times.merge_s


def lower_bound(plan: ChunkPlan, times: Times, gpus: int) -> float:
    """The larger of the critical path and: the anchor alone (everything else waits for
    it), then the rest of the work spread evenly over G GPUs, then the merge."""
    anchor = times.dit_load_s + times.anchor_s
    rest = (total_work(plan, times) - times.anchor_s) / gpus
    return max(critical_path(plan, times), anchor + rest + times.merge_s)


def _run(bars: list[Bar], gpu: int, idx: int, role: str, start: float, times: Times,
         loaded: list[str | None], counts: list[int]) -> float:
    """Append a chunk (and the DiT load it needs) to ``gpu``; returns its end time."""
    kind = dit_kind(role)
    if loaded[gpu] != kind:
        counts[0] += 1
        counts[1] += loaded[gpu] is not None
        bars.append(Bar(gpu, "load", start, start + times.dit_load_s, idx, kind))
        start += times.dit_load_s
        loaded[gpu] = kind
    end = start + times.chunk(role)
    bars.append(Bar(gpu, role, start, end, idx, kind))
    return end


def _merge(bars: list[Bar], gpus: int, times: Times) -> float:
    """The merge runs on the worker that finished the last chunk (the one that finds
    every chunk done first)."""
    last = max((b for b in bars if b.what != "load"), key=lambda b: (b.end, -b.gpu))
    bars.append(Bar(last.gpu, "merge", last.end, last.end + times.merge_s))
    return last.end + times.merge_s


def simulate(plan: ChunkPlan, times: Times, gpus: int) -> Result:
    """Dependency-driven: a free worker claims ``pick_chunk(ready, loaded DiT)``."""
    if gpus < 1:
        raise ValueError("gpus must be at least 1")
    roles = {c.index: c.role for c in plan.chunks}
    deps = {i: plan.dependencies(i) for i in roles}
    finish: dict[int, float] = {}  # claimed chunk -> end time (durations are fixed)
    free_at = [0.0] * gpus
    loaded: list[str | None] = [None] * gpus
    bars: list[Bar] = []
    counts = [0, 0]  # loads, switches
    t = 0.0
    while len(finish) < len(roles):
        for g in range(gpus):
            if free_at[g] > t:
                continue
            ready = [(i, r) for i, r in roles.items() if i not in finish
                     and all(d in finish and finish[d] <= t for d in deps[i])]
            picked = pick_chunk(ready, loaded[g])
            if picked is None:
                break  # nothing ready now: no other free worker gets anything either
            idx, role = picked
            finish[idx] = free_at[g] = _run(bars, g, idx, role, t, times, loaded, counts)
        later = [f for f in free_at if f > t]
        if not later and len(finish) < len(roles):
            raise ScheduleError(f"deadlock at t={t}: chunks "
                                f"{sorted(set(roles) - set(finish))} can never start")
        t = min(later, default=t)
    makespan = _merge(bars, gpus, times)
    result = Result("deps", gpus, bars, makespan, total_work(plan, times), *counts,
                    bound=lower_bound(plan, times, gpus))
    check_schedule(plan, result)
    return result


def simulate_release(plan: ChunkPlan, times: Times, gpus: int) -> Result:
    """The release: anchor, then every base chunk, then every cond chunk; each phase is
    a new process per GPU (so a fresh DiT load) and waits for the whole previous phase.
    Within a phase a chunk goes to the GPU that is free first (lowest id on a tie)."""
    if gpus < 1:
        raise ValueError("gpus must be at least 1")
    order = plan.order()
    roles = {c.index: c.role for c in plan.chunks}
    phases = [[plan.anchor], [i for i in order if roles[i] == "base"],
              [i for i in order if roles[i] == "cond"]]
    bars: list[Bar] = []
    counts = [0, 0]
    last_kind: list[str | None] = [None] * gpus  # what each GPU held in the last phase
    t = 0.0
    for phase in phases:
        if not phase:
            continue
        free_at = [t] * gpus
        loaded: list[str | None] = [None] * gpus  # a new process holds nothing
        for idx in phase:
            g = min(range(gpus), key=lambda k: (free_at[k], k))
            before = counts[0]
            free_at[g] = _run(bars, g, idx, roles[idx], free_at[g], times, loaded, counts)
            if counts[0] > before:  # a reload of the same DiT is no switch
                kind = dit_kind(roles[idx])
                counts[1] += last_kind[g] is not None and last_kind[g] != kind
                last_kind[g] = kind
        t = max(free_at)  # the barrier
    makespan = _merge(bars, gpus, times)
    result = Result("release", gpus, bars, makespan, total_work(plan, times), *counts,
                    bound=lower_bound(plan, times, gpus))
    check_schedule(plan, result)
    return result


def check_schedule(plan: ChunkPlan, result: Result) -> None:
    """Raise ScheduleError unless every chunk ran once, after all its dependencies ended,
    no GPU ran two things at once, and the merge came after every chunk."""
    runs = [b for b in result.bars if b.what in ("anchor", "base", "cond")]
    by_idx = {b.idx: b for b in runs}
    if sorted(b.idx for b in runs) != [c.index for c in plan.chunks]:
        raise ScheduleError(f"{result.policy}/{result.gpus}: chunks did not run exactly once")
    for b in runs:
        if b.what != plan.chunks[b.idx].role:
            raise ScheduleError(f"chunk {b.idx} ran as {b.what}")
        for d in plan.dependencies(b.idx):
            if by_idx[d].end > b.start:
                raise ScheduleError(
                    f"{result.policy}/{result.gpus}: chunk {b.idx} started at {b.start:.0f} s "
                    f"before its dependency {d} finished at {by_idx[d].end:.0f} s")
    for g in range(result.gpus):
        mine = sorted((b for b in result.bars if b.gpu == g), key=lambda b: b.start)
        for a, b in zip(mine, mine[1:], strict=False):
            if b.start < a.end:
                raise ScheduleError(f"GPU {g} runs {a.what} {a.idx} and {b.what} {b.idx} "
                                    "at once")
    merges = [b for b in result.bars if b.what == "merge"]
    if len(merges) != 1 or merges[0].start < max(b.end for b in runs):
        raise ScheduleError("the merge must run once, after every chunk")


def run_all(plan: ChunkPlan, times: Times, gpus: Sequence[int] = GPUS) -> list[Result]:
    out = []
    for g in gpus:
        out.append(simulate_release(plan, times, g))
        out.append(simulate(plan, times, g))
    return out


# -- output ------------------------------------------------------------------------

def _min(seconds: float) -> str:
    return f"{seconds / 60:.1f}"


def table(results: list[Result]) -> str:
    release = {r.gpus: r.makespan for r in results if r.policy == "release"}
    lines = ["| G | policy | makespan (min) | ideal (min) | ratio | lower bound (min) "
             "| DiT loads (switches) | idle per GPU (min) | vs release |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for r in results:
        gain = ("" if r.policy == "release"
                else f"{(r.makespan - release[r.gpus]) / release[r.gpus]:+.1%}")
        idle = " ".join(_min(s) for s in r.idle)
        lines.append(f"| {r.gpus} | {POLICY_NAMES[r.policy]} | {_min(r.makespan)} | "
                     f"{_min(r.ideal)} | {r.makespan / r.ideal:.2f} | {_min(r.bound)} | "
                     f"{r.loads} ({r.switches}) | {idle} | {gain} |")
    return "\n".join(lines)


COLOURS = {"anchor": (214, 39, 40), "base": (31, 119, 180), "cond": (44, 160, 44),
           "merge": (148, 103, 189), "load": (200, 200, 200)}
LANE, GAP, LEFT, PANEL_W, PAD = 16, 3, 52, 760, 16


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _tick_step(span_min: float) -> int:
    for step in (5, 10, 15, 30, 60, 120):
        if span_min / step <= 12:
            return step
    return 240


def gantt(results: list[Result], path: Path, title: str) -> None:
    """One row of two panels per G (release | dependency-driven), on a shared time axis
    per row; loads hatched grey, the ideal (work/G) as a dashed line."""
    from PIL import Image, ImageDraw

    font, small, big = _font(12), _font(10), _font(15)
    by = {(r.policy, r.gpus): r for r in results}
    gpus = sorted({r.gpus for r in results})
    header = 50
    heights = [22 + g * (LANE + GAP) + 26 for g in gpus]
    width = PAD + 2 * (LEFT + PANEL_W + PAD)
    img = Image.new("RGB", (width, header + sum(heights) + PAD), "white")
    d = ImageDraw.Draw(img)
    d.text((PAD, 8), title, fill="black", font=big)
    x = PAD
    for what in ("anchor", "base", "cond", "load", "merge"):
        d.rectangle((x, 32, x + 14, 42), fill=COLOURS[what], outline="black")
        if what == "load":
            _hatch(d, x, 32, x + 14, 42)
        label = "DiT load" if what == "load" else what
        d.text((x + 18, 30), label, fill="black", font=font)
        x += 24 + int(d.textlength(label, font=font)) + 12
    for xa in range(x, x + 16, 6):
        d.line((xa, 37, xa + 3, 37), fill="black", width=1)
    d.text((x + 20, 30), "ideal = work / G (loads, merge excluded)", fill="black", font=font)
    y = header
    for g, h in zip(gpus, heights, strict=True):
        span = max(by[(p, g)].makespan for p in POLICIES if (p, g) in by)
        for col, policy in enumerate(POLICIES):
            r = by.get((policy, g))
            if r is not None:
                x0 = PAD + col * (LEFT + PANEL_W + PAD)
                _panel(d, r, x0, y, span, font, small)
        y += h
    img = img.quantize(colors=64)  # flat colours: a palette image stays small
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, optimize=True)


def _hatch(d, x0: float, y0: float, x1: float, y1: float) -> None:
    step = 4
    k = x0 - (y1 - y0)
    while k < x1:
        # a 45-degree line from (k, y1) to (k + h, y0), clipped to the box
        a, b = max(k, x0), min(k + (y1 - y0), x1)
        if a < b:
            d.line((a, y1 - (a - k), b, y1 - (b - k)), fill=(110, 110, 110), width=1)
        k += step


def _panel(d, r: Result, x0: int, y0: int, span: float, font, small) -> None:
    scale = PANEL_W / span
    d.text((x0, y0 + 2), f"G={r.gpus} · {POLICY_NAMES[r.policy]} · makespan "
           f"{r.makespan / 60:.0f} min ({r.makespan / r.ideal:.2f}x ideal)",
           fill="black", font=font)
    top = y0 + 20
    bottom = top + r.gpus * (LANE + GAP)
    left = x0 + LEFT
    step = _tick_step(span / 60)
    m = 0
    while m * 60 <= span + 1e-9:
        x = left + m * 60 * scale
        d.line((x, top, x, bottom), fill=(232, 232, 232))
        d.line((x, bottom, x, bottom + 3), fill="black")
        label = f"{m}"
        d.text((x - d.textlength(label, font=small) / 2, bottom + 4), label, fill="black",
               font=small)
        m += step
    d.text((x0, bottom + 4), "min", fill=(90, 90, 90), font=small)
    for g in range(r.gpus):
        yt = top + g * (LANE + GAP)
        d.text((x0, yt + 2), f"GPU {g}", fill="black", font=small)
    for b in r.bars:
        yt = top + b.gpu * (LANE + GAP)
        xa, xb = left + b.start * scale, left + b.end * scale
        d.rectangle((xa, yt, max(xa + 1, xb - 1), yt + LANE), fill=COLOURS[b.what])
        if b.what == "load":
            _hatch(d, xa, yt, xb - 1, yt + LANE)
        elif b.idx is not None:
            label = f"{b.idx}"
            if d.textlength(label, font=small) + 2 < xb - xa:
                d.text((xa + 2, yt + 2), label, fill="white", font=small)
    xi = left + r.ideal * scale
    for ya in range(top - 2, bottom, 6):
        d.line((xi, ya, xi, min(ya + 3, bottom)), fill="black")
    d.line((left, bottom, left + PANEL_W, bottom), fill="black")


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--times", type=Path, default=DEFAULT_TIMES,
                    help="JSON with anchor_s, base_s, cond_s, dit_load_s, merge_s, source")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    ap.add_argument("--gpus", type=int, nargs="+", default=list(GPUS))
    ap.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                    help="driving-video length L (default 1896: K = 31)")
    ap.add_argument("--chunks", type=int, default=None, help="K (default: from --frames)")
    ap.add_argument("--anchor", type=int, default=0)
    ap.add_argument("--no-png", action="store_true")
    args = ap.parse_args(argv)

    times = Times.load(args.times)
    plan = plan_for(args.frames, args.chunks, args.anchor)
    results = run_all(plan, times, args.gpus)
    roles = [c.role for c in plan.chunks]
    counts = {r: roles.count(r) for r in ("anchor", "base", "cond")}
    cp = critical_path(plan, times)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"times": asdict(times), "times_file": _shown(args.times),
              "plan": {"frames": plan.total_frames, "chunks": plan.num_chunks,
                       "anchor": plan.anchor, "roles": counts},
              "work_s": total_work(plan, times), "critical_path_s": cp,
              "ideal": "work_s / G; work_s = sum of chunk times, DiT loads and merge excluded",
              "results": [r.summary() for r in results]}
    (args.out / JSON_NAME).write_text(json.dumps(report, indent=1) + "\n")
    if not args.no_png:
        gantt(results, args.out / PNG_NAME,
              f"PoseGen session, K={plan.num_chunks} chunks on G GPUs: release phases vs "
              f"dependency-driven scheduling (times: {args.times.name})")
        print(f"wrote {_shown(args.out / PNG_NAME)} "
              f"({(args.out / PNG_NAME).stat().st_size / 1000:.0f} kB)")
    print(f"wrote {_shown(args.out / JSON_NAME)}")
    print(f"plan: L={plan.total_frames} frames, K={plan.num_chunks} chunks "
          f"({counts['anchor']} anchor, {counts['base']} base, {counts['cond']} cond)")
    print(f"times (s): anchor {times.anchor_s:g}, base {times.base_s:g}, cond {times.cond_s:g}, "
          f"DiT load {times.dit_load_s:g}, merge {times.merge_s:g} -- {times.source[:90]}")
    print(f"work = sum of chunk times = {_min(total_work(plan, times))} min; "
          f"ideal = work / G (loads and merge excluded); "
          f"critical path (2 loads + anchor + base + cond + merge) = {_min(cp)} min; "
          "lower bound = max(critical path, load + anchor + (work - anchor) / G + merge); "
          "dependency order checked for every schedule")
    print()
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
