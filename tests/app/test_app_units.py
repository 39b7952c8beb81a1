"""Pure parts of the app: timeline drawing, thumbnails, plots, tuning, forms, GPU sources."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from posegen_tui import fmt
from posegen_tui.app import PosegenApp
from posegen_tui.app_protocol import AppApi
from posegen_tui.coalesce import Coalescer
from posegen_tui.data.chunk import Chunk
from posegen_tui.data.chunk_files import load_chunk_files
from posegen_tui.data.forms import FormError, check_project, check_session, session_defaults
from posegen_tui.data.log_tail import tail_lines
from posegen_tui.data.tuning import Point, budget_params, format_params, suggest
from posegen_tui.gpu import nvml
from posegen_tui.gpu.fake import FakeGpuSource, NoGpuSource
from posegen_tui.gpu.from_env import source_from_env
from posegen_tui.gpu.history import GpuHistory
from posegen_tui.widgets.halfcell import fit, halfcell_lines
from posegen_tui.widgets.memory_plot import plot_lines
from posegen_tui.widgets.timeline_layout import layout
from posegen_tui.widgets.timeline_text import timeline_text
from sessions.control import Workspace

ROOT = Path(__file__).resolve().parents[2]
GIB = 2**30


def chunks(*statuses: str) -> list[Chunk]:
    """Chunks of an 81/21/20 plan with the given statuses."""
    out = []
    for i, status in enumerate(statuses):
        start = i * 81 - -(-i // 2) * 21 - (i // 2) * 20
        role = "anchor" if i == 0 else ("base" if i % 2 == 0 else "cond")
        out.append(Chunk(idx=i, role=role, start=start, end=start + 81, status=status,
                         step=10 if status == "running" else 0, steps=25,
                         eta_seconds=90.0 if status == "running" else None, updated_at=100.0))
    return out


# -- timeline ----------------------------------------------------------------------

def test_layout_puts_cond_chunks_below_and_overlapping() -> None:
    lay = layout(chunks("done", "done", "done", "ready", "pending"), 80)
    rows = {s.chunk.idx: s.row for s in lay.spans}
    assert rows == {0: 0, 1: 1, 2: 0, 3: 1, 4: 0}
    span = {s.chunk.idx: s for s in lay.spans}
    assert span[1].c0 < span[0].c1 and span[1].c1 > span[2].c0  # overlaps both neighbours
    assert span[0].c1 <= span[2].c0  # base chunks never overlap each other
    assert lay.ticks[0] == (6, 0)


@pytest.mark.parametrize("width", [40, 80, 160])
def test_timeline_reads_without_colour(width: int) -> None:
    text = timeline_text(chunks("done", "stale", "failed", "ready", "running", "pending",
                                "pending"), width, selected=4, now=130.0)
    lines = text.plain.splitlines()
    assert lines[0].startswith("frame 0")
    base, cond = lines[1], lines[2]
    assert base.startswith("base") and cond.startswith("cond")
    assert "#" in base and "!" in base and ">" in base  # done, failed, running
    assert "~" in cond and "-" in cond and "." in cond  # stale, ready, pending
    assert "^" in lines[3]
    assert all(len(line) <= width for line in lines)


def test_timeline_names_the_anchor_and_the_running_chunk() -> None:
    text = timeline_text(chunks("done", "ready", "running"), 160, selected=2, now=130.0).plain
    assert "[0A" in text
    assert "2 base running 10/25 ETA 01:00" in text  # 90 s at t=100, read at t=130


def test_timeline_says_what_a_running_chunk_does_between_steps() -> None:
    """Issue #15: ~100 s at 0/10 while loading, ~90 s at 10/10 while decoding, said
    nothing; the timeline names the phase and its time instead of a still step count."""
    from dataclasses import replace

    rows = chunks("done", "ready", "running")
    decoding = [*rows[:2], replace(rows[2], phase="decoding", phase_seconds=75.0)]
    caret = timeline_text(decoding, 160, selected=2, now=130.0).plain.splitlines()[3]
    assert "2 base running decoding 01:15" in caret and "10/25" not in caret, caret
    sampling = [*rows[:2], replace(rows[2], phase="sampling", phase_seconds=75.0)]
    assert "2 base running 10/25 ETA 01:00" in timeline_text(sampling, 160, 2, 130.0).plain


def test_empty_timeline() -> None:
    assert timeline_text([], 80, None, 0.0).plain == "no chunks yet"


# -- pictures ------------------------------------------------------------------------

def test_halfcell_keeps_aspect_and_limits() -> None:
    img = np.zeros((128, 64, 3), dtype=np.uint8)
    assert fit(img, rows=4).shape == (8, 4, 3)
    assert fit(img, rows=20, max_cols=5).shape[1] == 5
    assert fit(img, rows=20, max_cols=5).shape[0] % 2 == 0
    lines = halfcell_lines(fit(img, rows=4))
    assert len(lines) == 4 and lines[0].plain == "▀" * 4


def test_memory_plot_uses_an_absolute_scale() -> None:
    lines = plot_lines([40 * GIB] * 10, 80 * GIB, 10, 2)
    assert lines == [" " * 10, "█" * 10]  # half full: the lower row only
    assert plot_lines([1], 100, 5, 1) == ["    ▁"]  # used at all: a visible bar
    assert plot_lines([], 100, 4, 2) == ["    "] * 2


def test_thumbnails_from_frames_npy(tmp_path: Path) -> None:
    folder = tmp_path / "chunks" / "002"
    folder.mkdir(parents=True)
    frames = np.random.default_rng(0).integers(0, 255, (17, 96, 48, 3), dtype=np.uint8)
    np.save(folder / "frames.npy", frames)
    (folder / "done.json").write_text("{}")
    files = load_chunk_files(Workspace(tmp_path), 2, "base")
    assert [name for name, _ in files.files] == ["done.json", "frames.npy"]
    assert files.frames == 17 and [i for i, _ in files.thumbs] == [0, 5, 11, 16]
    assert files.thumbs[0][1].shape == (48, 24, 3)  # cut to at most 48 rows
    assert np.array_equal(files.thumbs[1][1], frames[5, ::2, ::2])
    assert "not decoded" in load_chunk_files(Workspace(tmp_path), 4, "base").problem


# -- tuning --------------------------------------------------------------------------

def test_budget_text() -> None:
    assert budget_params("4e9") == budget_params("4G") == budget_params("4*10**9") == 4 * 10**9
    assert budget_params("none") is None and budget_params("None") is None
    assert format_params(3.456e9) == "3.4e9"


def point(budget: str, peak_gib: float) -> Point:
    return Point(1, 0, "base", budget, budget_params(budget), int(peak_gib * GIB), None, 1.0)


def test_suggest_fits_peak_against_budget() -> None:
    pts = [point("2e9", 10), point("4e9", 14), point("4e9", 14)]
    s = suggest(pts, 40 * GIB)
    # peak = 6 GiB + 2 GiB per 1e9; 90% of 40 GiB = 36 GiB -> 15e9
    assert s.budget == "1.5e10"
    assert "linear fit" in s.basis and "10% margin" in s.basis


def test_suggest_says_when_it_cannot() -> None:
    assert "too few points" in suggest([point("4e9", 14)], 40 * GIB).basis
    assert suggest([point("4e9", 14)], 40 * GIB).budget is None
    assert "free-memory" in suggest([], None).basis
    assert "even -p 0" in suggest([point("2e9", 50), point("4e9", 54)], 40 * GIB).basis


# -- forms ---------------------------------------------------------------------------

def project(tmp_path: Path, prompt: str = "a girl jumps", framing: str = "distant") -> dict:
    for name in ("ref.png", "pose.mp4", "hand.mp4"):
        (tmp_path / name).write_bytes(b"x")
    return {"name": "p", "image": str(tmp_path / "ref.png"), "pose": str(tmp_path / "pose.mp4"),
            "hand": str(tmp_path / "hand.mp4"), "prompt": prompt, "framing": framing}


def test_session_form_defaults_follow_the_framing(tmp_path: Path, sample_dir: Path,
                                                  tiny_ckpt: Path) -> None:
    p = project(tmp_path)
    d = session_defaults(p)
    assert (d["share_steps"], d["share_blocks"]) == ("0 4", "30 40")
    assert (d["steps"], d["cfg"], d["seed"], d["height"], d["width"]) == (
        "25", "5", "42", "1280", "720")
    p |= {k: str(sample_dir / name) for k, name in
          (("image", "reference.png"), ("pose", "pose.mp4"), ("hand", "hand.mp4"))}
    new = check_session(p, d | {"ckpt": str(tiny_ckpt), "share_blocks": "2 4", "seed": "7"})
    assert new.project == "p" and new.ckpt == tiny_ckpt and new.budget == "none"
    assert new.settings.share_steps == (0, 4) and new.settings.share_blocks == (2, 4)
    assert new.settings.seed == 7 and new.settings.height == 1280


def test_session_form_explains_every_problem(tmp_path: Path) -> None:
    p = project(tmp_path, prompt="a person jumps")
    (tmp_path / "pose.mp4").unlink()
    values = session_defaults(p) | {"ckpt": str(tmp_path / "nope"), "head": "20",
                                    "tail": "21", "share_blocks": "40", "seed": "x",
                                    "device": "gpu"}
    with pytest.raises(FormError) as err:
        check_session(p, values)
    text = "\n".join(err.value.problems)
    for expected in ("pose.mp4 is missing", "names no subject", "--head 20", "-b '40'",
                     "seed: 'x' is not a whole number", "--device 'gpu'", "nope"):
        assert expected in text


def test_project_form(tmp_path: Path) -> None:
    v = check_project(project(tmp_path, prompt="a man runs") | {"image": "nope.png"})
    assert v.problems == ["image: nope.png not found (missing file)"]
    assert check_project(project(tmp_path)).problems == []


# -- GPU sources -----------------------------------------------------------------------

def test_sources_from_env() -> None:
    assert isinstance(source_from_env("fake"), FakeGpuSource)
    assert isinstance(source_from_env("none"), NoGpuSource)
    assert isinstance(source_from_env("nvml"), nvml.NvmlSource)
    assert NoGpuSource().read() == [] and NoGpuSource().unavailable()


def test_nvml_errors_become_na(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nvml, "nvml_error", lambda: "NVMLError_LibraryNotFound: gone")
    src = nvml.NvmlSource()
    assert src.read() == [] and "LibraryNotFound" in src.unavailable()

    monkeypatch.setattr(nvml, "nvml_error", lambda: "")
    monkeypatch.setattr(nvml.NvmlSource, "_count", staticmethod(lambda: 2))
    monkeypatch.setattr(nvml, "device_memory", lambda i: None)  # a device stops answering
    readings = nvml.NvmlSource().read()
    assert [(r.index, r.used, r.util) for r in readings] == [(0, None, None), (1, None, None)]


def test_history_counts_a_second_once() -> None:
    h = GpuHistory(keep=3)
    h.add_samples([{"device_index": 0, "t": 10.2, "used": 1}])
    h.add(0, 10.7, 2)  # same second: the newer value wins
    for t in (11, 12, 13):
        h.add(0, t, t)
    assert h.series(0) == [11, 12, 13] and h.span(0) == 2.0


# -- small things --------------------------------------------------------------------

class FakeNode:
    def __init__(self) -> None:
        self.timers: list[Callable[[], None]] = []

    def set_timer(self, delay: float, callback: Callable[[], None]) -> None:
        self.timers.append(callback)


def test_coalescer_keeps_only_the_newest_pending_snapshot() -> None:
    node, applied = FakeNode(), []
    c = Coalescer(node, applied.append, min_interval=60)
    c.push(1)  # applied at once
    c.push(2)
    c.push(3)  # replaces 2 while the timer waits
    assert applied == [1] and len(node.timers) == 1
    node.timers[0]()
    assert applied == [1, 3]


def test_formatting(tmp_path: Path) -> None:
    assert [fmt.age(0, t) for t in (5, 125, 7300, 3 * 86400)] == ["5s", "2m", "2h", "3d"]
    assert fmt.size(48_213) == "48.2 kB" and fmt.gib(None) == "N/A"
    log = tmp_path / "w.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail_lines(log, 3) == ["line 97", "line 98", "line 99"]
    assert tail_lines(log, 2, max_bytes=20) == ["line 98", "line 99"]
    assert tail_lines(tmp_path / "missing.log") == []


def test_app_never_loads_the_generation_code() -> None:
    """The app reaches the engine through the store and processes: no torch, no Job."""
    code = (
        "import importlib, pkgutil, sys, posegen_tui\n"
        "for m in pkgutil.walk_packages(posegen_tui.__path__, 'posegen_tui.'):\n"
        "    if not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'diffsynth') or\n"
        "       m in ('engine.job', 'engine.sampler', 'engine.models', 'sessions.worker',\n"
        "             'sessions.session_job')]\n"
        "print(','.join(sorted(bad)))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_the_app_provides_what_screens_ask_of_it(tmp_path: Path) -> None:
    """Screens and the palette see the app as an `AppApi`; PosegenApp has all of it."""
    app: AppApi = PosegenApp(home=tmp_path, gpu=NoGpuSource())
    assert isinstance(app, AppApi)


def test_a_result_reaching_the_app_after_it_quit_is_dropped(tmp_path: Path) -> None:
    """A GPU read landing while the app closes its screens raised ScreenStackError."""
    import asyncio

    from posegen_tui.runner import ResultReady

    applied: list[int] = []
    app = PosegenApp(home=tmp_path / "home", gpu=NoGpuSource(), auto_open=False, blink=False)

    async def drive() -> None:
        async with app.run_test(size=(80, 24)):
            app.on_result_ready(ResultReady(1, applied.append))  # running: applied

    asyncio.run(drive())
    assert not app.is_running
    app.on_result_ready(ResultReady(2, applied.append))  # quit: dropped, nothing raised
    app.on_result_ready(ResultReady(None, lambda _: app.refresh_gpu_panels()))
    assert applied == [1]
