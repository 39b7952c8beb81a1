"""Compiled DiT blocks (engine/compiler.py): when they are used, what they compute, resume.

The rules run everywhere. The compiled paths run on the CPU at the tiny checkpoint's
shapes, where torch.compile works on this machine (its CPU code needs a C++ compiler);
elsewhere they are skipped with the reason. Every compiled test here uses one set of
shapes (a 64x32, 17-frame chunk), so a test session compiles once (~20 s on 2 cores).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import generate_args, mid_chunk_state, run
from safetensors import safe_open

from engine import compiler
from engine.checkpoint.dit_loader import load_dit
from engine.checkpoint.layout import CheckpointLayout
from engine.cli import build_parser
from engine.cli_options import settings_from_args
from engine.errors import JobError
from engine.job import Job, JobInputs, JobSettings
from engine.media import load_frames
from engine.models.dit import EAGER_STAGES, PoseGenDiT

UNAVAILABLE = compiler.unavailable_reason("cpu")
needs_compiler = pytest.mark.skipif(
    UNAVAILABLE is not None, reason=f"torch.compile cannot compile here: {UNAVAILABLE}")

# The tiny checkpoint's chunk at 64x32 pixels, 17 frames: latents (1, 16, 5, 8, 4).
LATENT = (5, 8, 4)
TEXT_TOKENS = 512  # the tokenizer pads every prompt to this many tokens
STEPS = 2


@pytest.fixture(autouse=True)
def _no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(compiler.COMPILE_ENV, raising=False)


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh compiler cache for this module's compiles (the code itself is cached in
    the process: once compiled, later tests reuse it)."""
    path = tmp_path_factory.mktemp("torch-compile")
    saved = {k: os.environ.get(k) for k in (compiler.CACHE_ENV, "TORCHINDUCTOR_CACHE_DIR")}
    os.environ[compiler.CACHE_ENV] = str(path)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)
    yield path
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


# -- when blocks are compiled (no compiler needed) --------------------------------------------


def test_auto_compiles_on_cuda_only_and_never_streamed_weights(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiler, "unavailable_reason", lambda device: None)
    assert not compiler.decide("auto", "cpu", 0).compiled
    assert compiler.decide("auto", "cuda", 0).compiled
    assert compiler.decide("on", "cpu", 0).compiled
    assert not compiler.decide("off", "cuda", 0).compiled
    streamed = compiler.decide("on", "cuda", 3_000_000_000)
    assert not streamed.compiled and "-p streams 3.00 B parameters" in streamed.reason
    # the environment overrides a session's setting, for its next workers
    assert compiler.decide("auto", "cpu", 0).reason == \
        "off on cpu (--compile auto compiles on CUDA only)"
    monkeypatch.setenv(compiler.COMPILE_ENV, "off")
    assert compiler.decide("on", "cuda", 0) == compiler.CompileDecision(
        False, "off (POSEGEN_COMPILE=off)")
    monkeypatch.setenv(compiler.COMPILE_ENV, "sometimes")
    with pytest.raises(JobError, match="POSEGEN_COMPILE='sometimes'"):
        compiler.decide("auto", "cuda", 0)


def test_compile_on_without_a_compiler_is_refused_before_loading(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiler, "unavailable_reason", lambda device: "no C++ compiler")
    with pytest.raises(JobError, match="--compile on: no C\\+\\+ compiler.*--no-compile"):
        compiler.check_mode("on", "cpu")
    compiler.check_mode("auto", "cpu")  # auto just runs eager
    decision = compiler.decide("auto", "cuda", 0)
    assert not decision.compiled and "no C++ compiler" in decision.reason


def test_cpu_compiler_needs_a_cxx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(compiler.shutil, "which", lambda name: None)
    assert "C++ compiler" in (compiler.unavailable_reason("cpu") or "")


def test_cache_dir_under_posegen_home_or_the_users_cache(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    for k in (compiler.CACHE_ENV, "POSEGEN_HOME", "TORCHINDUCTOR_CACHE_DIR"):
        monkeypatch.delenv(k, raising=False)
    import platformdirs

    assert compiler.cache_dir() == Path(platformdirs.user_cache_dir("posegen")) / "torch-compile"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    assert compiler.cache_dir() == tmp_path / "inductor"
    monkeypatch.setenv("POSEGEN_HOME", str(tmp_path / "home"))
    assert compiler.cache_dir() == tmp_path / "home" / "cache" / "torch-compile"
    monkeypatch.setenv(compiler.CACHE_ENV, str(tmp_path / "mine"))
    assert compiler.cache_dir() == tmp_path / "mine"


def test_compile_options_of_generate_and_session_new() -> None:
    from sessions.cli import build_parser as sessions_parser

    need = ["--image", "i", "--pose", "p", "--hand", "h", "--prompt", "a woman", "--out", "o"]
    p = build_parser()
    assert settings_from_args(p.parse_args(["generate", *need])).compile == "auto"
    assert settings_from_args(p.parse_args(["generate", *need, "--no-compile"])).compile == "off"
    assert settings_from_args(p.parse_args(["generate", *need, "--compile", "on"])).compile \
        == "on"
    with pytest.raises(SystemExit):
        p.parse_args(["generate", *need, "--compile", "on", "--no-compile"])
    s = sessions_parser()
    assert s.parse_args(["session", "new", "proj", "--no-compile"]).compile == "off"
    assert s.parse_args(["session", "new", "proj"]).compile == "auto"
    assert JobSettings(compile="maybe").problems() == [
        "--compile maybe: choose one of auto, on, off"]


def test_compile_setting_is_not_part_of_the_fingerprint(tiny_ckpt: Path, sample_dir: Path,
                                                        tmp_path: Path) -> None:
    """Compiled or eager is how the DiT computes, not what: a workspace resumes under
    either (each chunk's saved steps say which they were; see the resume tests)."""
    fps = [make_job(tmp_path, tiny_ckpt, sample_dir, [], mode).fingerprint()
           for mode in ("auto", "off", "on")]
    assert fps[0] == fps[1] == fps[2] and "compile" not in fps[0]["settings"]


# -- compiled blocks on the CPU ---------------------------------------------------------------


def make_job(out: Path, ckpt: Path, inputs: Path, events: list, compile: str) -> Job:
    return Job(out, JobInputs(image=inputs / "reference.png", pose=inputs / "pose.mp4",
                              hand=inputs / "hand.mp4",
                              prompt=(inputs / "prompt.txt").read_text()),
               JobSettings(height=64, width=32, frames=17, head=5, tail=4, steps=STEPS,
                           share_blocks=(2, 4), num_chunks=3, compile=compile),
               ckpt=ckpt, progress=events.append)


def tiny_dit(ckpt: Path) -> tuple[PoseGenDiT, dict[str, torch.Tensor]]:
    dit = load_dit(CheckpointLayout(ckpt).dit_dir("base"))
    g = torch.Generator().manual_seed(0)

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    with torch.no_grad():
        context = dit.embed_context(rnd(1, TEXT_TOKENS, dit.cfg.text_dim), rnd(1, 257, 1280))
    x = {"latents": rnd(1, 16, *LATENT), "cond": rnd(1, 20, *LATENT),
         "hand": rnd(1, 16, *LATENT), "ref": rnd(1, 16, 1, *LATENT[1:]), "context": context,
         "timestep": torch.tensor([700.0])}
    return dit, x


def forward(dit: PoseGenDiT, x: dict[str, torch.Tensor], hook=None) -> torch.Tensor:
    with torch.no_grad():
        return dit(x["latents"], x["cond"], x["hand"], x["ref"], x["context"], x["timestep"],
                   hook)


class KVSpy:
    """A hook that keeps each block's attention input, K and V, and K/V recomputed from
    that input as a base chunk recomputes the anchor's."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[torch.Tensor, ...]] = {}
        self.maps: list[int] = []

    def self_attention(self, block, q, k, v, n_video, x, project_kv):
        self.seen[block] = (k, v, *project_kv(x.clone()))
        return None

    def wants_keyword_map(self, block: int) -> bool:
        return True

    def keyword_map(self, block, q_video, k_text) -> None:
        self.maps.append(block)

    def end_forward(self) -> None:
        pass


@needs_compiler
@pytest.mark.usefixtures("one_torch_thread", "compile_cache")
def test_compiled_blocks_match_eager_and_repeat_bit_for_bit(tiny_ckpt: Path) -> None:
    from torch._dynamo.utils import counters

    dit, x = tiny_dit(tiny_ckpt)
    eager = forward(dit, x)
    compiler.compile_blocks(dit)
    assert dit.compiled
    first = forward(dit, x)
    torch.testing.assert_close(first, eager, rtol=1e-4, atol=1e-5)
    assert torch.equal(forward(dit, x), first)  # the same bits every run
    assert not counters["graph_break"], dict(counters["graph_break"])
    # The hooks run between the compiled stages: they see every block, and K/V recomputed
    # from a block's attention input (the anchor cache's) equal what the block attended with.
    spy = KVSpy()
    assert torch.equal(forward(dit, x, spy), first)
    assert sorted(spy.seen) == list(range(dit.cfg.num_layers)) == spy.maps
    for k, v, k_again, v_again in spy.seen.values():
        assert torch.equal(k, k_again) and torch.equal(v, v_again)
    compiler.eager_blocks(dit)  # --no-compile: the eager code, the eager numbers
    assert not dit.compiled and dit.blocks[0].stages is EAGER_STAGES
    assert torch.equal(forward(dit, x), eager)


def frames(out: Path, i: int) -> np.ndarray:
    return load_frames(out / "chunks" / f"{i:03d}" / "frames.npy")


def done(out: Path, i: int) -> dict:
    return json.loads((out / "chunks" / f"{i:03d}" / "done.json").read_text())


@pytest.fixture(scope="module")
def compiled_run(tiny_ckpt: Path, sample_dir: Path, tmp_path_factory: pytest.TempPathFactory,
                 compile_cache: Path) -> tuple[Path, list]:
    """Anchor (0) then base (2) chunk with compiled blocks, uninterrupted."""
    if UNAVAILABLE is not None:
        pytest.skip(f"torch.compile cannot compile here: {UNAVAILABLE}")
    out = tmp_path_factory.mktemp("compiled")
    events: list = []
    job = make_job(out, tiny_ckpt, sample_dir, events, "on")
    job.prepare()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert job.run_chunk(0) is not None and job.run_chunk(2) is not None
    finally:
        torch.set_num_threads(before)
    return out, events


@needs_compiler
@pytest.mark.usefixtures("one_torch_thread")
def test_compiled_anchor_and_base_chunks_match_eager(compiled_run: tuple[Path, list],
                                                     tiny_ckpt: Path, sample_dir: Path,
                                                     tmp_path: Path) -> None:
    out, events = compiled_run
    # The anchor's cache is complete: every share step, block and pass, and the maps.
    cache = out / "cache" / "anchor"
    assert json.loads((cache / "manifest.json").read_text())["complete"] is True
    assert sorted(p.name for p in cache.glob("x_*.safetensors")) == sorted(
        f"x_s{s:03d}_b{b:03d}_{p}.safetensors" for s in (0, 1) for b in (2, 3)
        for p in ("pos", "neg"))
    # Compiling is its own phase of the first chunk only, and an event says how long it took.
    phases = {c: [e.message for e in events if e.kind == "phase" and e.chunk == c]
              for c in (0, 2)}
    assert phases[0] == ["loading", "encoding", "compiling", "sampling", "decoding", "writing"]
    assert "compiling" not in phases[2]
    compiled = [e for e in events if e.kind == "compiled"]
    assert len(compiled) == 1 and compiled[0].chunk == 0
    assert compiled[0].message.startswith("DiT blocks compiled in ")
    assert done(out, 0)["extra"]["compiled"] is True
    assert done(out, 0)["extra"]["phases"]["compiling"] > 0

    # --no-compile: the eager path as before (no compiling phase), and the same frames
    # within float noise (uint8 frames may move by a level where a value sits on a step).
    eager_events: list = []
    job = make_job(tmp_path, tiny_ckpt, sample_dir, eager_events, "off")
    job.prepare()
    assert job.run_chunk(0) is not None and job.run_chunk(2) is not None
    assert "compiling" not in [e.message for e in eager_events if e.kind == "phase"]
    assert done(tmp_path, 2)["extra"]["compiled"] is False
    for i in (0, 2):
        diff = np.abs(frames(out, i).astype(int) - frames(tmp_path, i).astype(int))
        assert diff.max() <= 1 and diff.mean() < 0.01, (i, diff.max(), diff.mean())


@pytest.mark.usefixtures("one_torch_thread")
def test_a_failing_compiler_falls_back_to_eager_under_auto_and_stops_under_on(
        tiny_ckpt: Path, sample_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.model_set

    monkeypatch.setattr(engine.model_set, "decide",
                        lambda mode, device, streamed: compiler.CompileDecision(True, "on"))
    monkeypatch.setattr(engine.model_set, "compile_blocks", lambda dit: None)

    def broken(*args, **kwargs):
        raise RuntimeError("the backend compiler broke\nlong traceback")

    monkeypatch.setattr(PoseGenDiT, "warm_up", broken)
    events: list = []
    job = make_job(tmp_path / "auto", tiny_ckpt, sample_dir, events, "auto")
    job.prepare()
    assert job.run_chunk(0) is not None  # ran eager: no step was computed compiled
    notices = [e.message for e in events if e.kind == "notice"]
    assert notices == ["compiling the DiT blocks failed (RuntimeError: the backend compiler "
                       "broke); running them eager"]
    assert done(tmp_path / "auto", 0)["extra"]["compiled"] is False
    assert "compiling failed" in done(tmp_path / "auto", 0)["extra"]["compile"]

    monkeypatch.setattr(compiler, "unavailable_reason", lambda device: None)
    job = make_job(tmp_path / "on", tiny_ckpt, sample_dir, [], "on")
    job.prepare()
    with pytest.raises(JobError, match="--compile on: compiling the DiT blocks failed "
                                       "\\(RuntimeError: the backend compiler broke\\)"):
        job.run_chunk(0)
    assert not (tmp_path / "on" / "chunks" / "000" / "state.safetensors").exists()


def stop_after_step(events: list, step: int):
    return lambda: any(e.kind == "step" and e.step >= step for e in events)


def state_key(out: Path, i: int) -> dict:
    with safe_open(str(out / "chunks" / f"{i:03d}" / "state.safetensors"), "pt") as f:
        return json.loads((f.metadata() or {})["key"])


@needs_compiler
@pytest.mark.usefixtures("one_torch_thread")
def test_a_compiled_chunk_resumes_to_the_same_bits(compiled_run: tuple[Path, list],
                                                   tiny_ckpt: Path, sample_dir: Path,
                                                   tmp_path: Path) -> None:
    out, _ = compiled_run
    events: list = []
    job = make_job(tmp_path, tiny_ckpt, sample_dir, events, "on")
    job.prepare()
    assert job.run_chunk(0, should_stop=stop_after_step(events, 1)) is None
    assert state_key(tmp_path, 0)["dit"] == "compiled"
    resumed: list = []
    job = make_job(tmp_path, tiny_ckpt, sample_dir, resumed, "on")  # a new worker
    job.prepare()
    result = job.run_chunk(0)
    assert result is not None and result.steps_run == STEPS - 1
    assert not [e for e in resumed if e.kind == "notice"]
    np.testing.assert_array_equal(frames(tmp_path, 0), frames(out, 0))


@needs_compiler
@pytest.mark.usefixtures("one_torch_thread")
def test_eager_steps_are_never_continued_compiled(compiled_run: tuple[Path, list],
                                                  tiny_ckpt: Path, sample_dir: Path,
                                                  tmp_path: Path) -> None:
    out, _ = compiled_run
    events: list = []
    job = make_job(tmp_path, tiny_ckpt, sample_dir, events, "off")
    job.prepare()
    assert job.run_chunk(0, should_stop=stop_after_step(events, 1)) is None
    assert "dit" not in state_key(tmp_path, 0)  # eager states keep their old key
    resumed: list = []
    job = make_job(tmp_path, tiny_ckpt, sample_dir, resumed, "on")
    job.prepare()
    result = job.run_chunk(0)
    assert result is not None and result.steps_run == STEPS  # started over, compiled
    notices = [e.message for e in resumed if e.kind == "notice"]
    assert notices and "saved steps ran eager" in notices[0] and "starts over" in notices[0]
    np.testing.assert_array_equal(frames(tmp_path, 0), frames(out, 0))


@needs_compiler
@pytest.mark.slow  # three `posegen generate` processes, one compiling cold: ~1-2 min
def test_kill_9_mid_compiled_chunk_then_resume_matches_uninterrupted(
        tiny_ckpt: Path, sample_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each process compiles (the first into an empty cache, the others from it); a
    chunk killed mid-way and resumed in a new process ends with the uninterrupted
    compiled run's frames, bit for bit."""
    monkeypatch.setenv(compiler.CACHE_ENV, str(tmp_path / "cache"))
    steps = "4"
    extra = ("--steps", steps, "--num-chunks", "3", "--compile", "on")
    reference = tmp_path / "reference"
    proc = run(generate_args(tiny_ckpt, sample_dir, reference, *extra))
    assert proc.returncode == 0, proc.stderr
    assert "DiT blocks compiled in" in proc.stderr

    killed = False
    for attempt in range(8):
        out = tmp_path / f"try{attempt}"
        p = subprocess.Popen(generate_args(tiny_ckpt, sample_dir, out, *extra),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             cwd=Path(__file__).resolve().parents[1], env=dict(os.environ))
        deadline = time.monotonic() + 180
        while p.poll() is None and time.monotonic() < deadline:
            if mid_chunk_state(out, int(steps)) is not None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
                killed = True
                break
            time.sleep(0.001)
        else:
            p.wait()
        if killed:
            break
    assert killed, "never caught a chunk mid-way; the test could not kill"
    resumed = run(generate_args(tiny_ckpt, sample_dir, out, *extra))
    assert resumed.returncode == 0, resumed.stderr
    assert "starts over" not in resumed.stderr
    for i in range(3):
        np.testing.assert_array_equal(frames(out, i), frames(reference, i))
