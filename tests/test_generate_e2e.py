"""End to end: `posegen generate` on the tiny checkpoint, then kill -9 and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    REFERENCE_STEPS,
    SAMPLE_FPS,
    SAMPLE_FRAMES,
    generate_args,
    mid_chunk_state,
    run,
)

from engine.media import load_frames, video_info

STEPS = REFERENCE_STEPS  # the shared reference_run fixture's step count


def chunk_frames(out: Path) -> list[np.ndarray]:
    return [load_frames(d / "frames.npy") for d in sorted((out / "chunks").iterdir())]


@pytest.mark.slow  # needs the session's reference_run: ~30 s to make
def test_video_has_driving_frame_count_and_fps(reference_run: Path) -> None:
    frames, fps, height, width = video_info(reference_run / "video.mp4")
    assert (frames, fps) == (SAMPLE_FRAMES, SAMPLE_FPS)
    assert (height, width) == (64, 32)
    assert len(list((reference_run / "chunks").iterdir())) == 5


@pytest.mark.slow  # needs the session's reference_run: ~30 s to make
def test_anchor_cache_holds_only_share_steps_and_blocks(reference_run: Path) -> None:
    cache = reference_run / "cache" / "anchor"
    inputs = sorted(p.name for p in cache.glob("x_*.safetensors"))
    expected = sorted(f"x_s{s:03d}_b{b:03d}_{p}.safetensors"
                      for s in (0, 1) for b in (2, 3) for p in ("pos", "neg"))
    assert inputs == expected
    assert not list(cache.glob("*.tmp"))  # every background write finished and was renamed
    assert sorted(p.name for p in cache.glob("maps_*")) == ["maps_s000.safetensors",
                                                            "maps_s001.safetensors"]
    assert json.loads((cache / "manifest.json").read_text())["complete"] is True


@pytest.mark.slow  # needs the session's reference_run: ~30 s to make
def test_rerun_of_finished_job_recomputes_nothing(reference_run: Path, tiny_ckpt: Path,
                                                  sample_dir: Path) -> None:
    before = {p: p.read_text() for p in (reference_run / "chunks").glob("*/done.json")}
    proc = run(generate_args(tiny_ckpt, sample_dir, reference_run, "--steps", STEPS))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("already done, kept") == 5
    assert {p: p.read_text() for p in before} == before


@pytest.mark.slow  # needs the session's reference_run: ~30 s to make
def test_changed_seed_in_same_out_dir_is_refused(reference_run: Path, tiny_ckpt: Path,
                                                 sample_dir: Path) -> None:
    proc = run(generate_args(tiny_ckpt, sample_dir, reference_run, "--steps", STEPS,
                             "--seed", "7"))
    assert proc.returncode == 2
    assert "seed: 42 -> 7" in proc.stderr and "--restart" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_kill_9_mid_chunk_then_resume_matches_uninterrupted(
        reference_run: Path, tiny_ckpt: Path, sample_dir: Path, tmp_path: Path) -> None:
    """A SIGKILL in the middle of a chunk loses at most the step in flight."""
    steps = int(STEPS)
    killed_in: Path | None = None
    for attempt in range(8):
        out = tmp_path / f"try{attempt}"
        cmd = generate_args(tiny_ckpt, sample_dir, out, "--steps", STEPS)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                cwd=Path(__file__).resolve().parents[1])
        deadline = time.monotonic() + 120
        # Wait for some chunk beyond the anchor to be part-way through its steps.
        while proc.poll() is None and time.monotonic() < deadline:
            if (out / "chunks" / "000" / "done.json").exists():
                state = mid_chunk_state(out, steps)
                if state is not None:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
                    killed_in = state
                    break
            time.sleep(0.001)
        else:
            proc.wait()
        if killed_in is not None:
            break
    assert killed_in is not None, "never caught a chunk mid-way; the test could not kill"

    finished_before = {p.parent.name: p.read_text() for p in (out / "chunks").glob("*/done.json")}
    resumed = run(generate_args(tiny_ckpt, sample_dir, out, "--steps", STEPS))
    assert resumed.returncode == 0, resumed.stderr
    # Finished chunks are kept as they were, never recomputed.
    for name, text in finished_before.items():
        assert (out / "chunks" / name / "done.json").read_text() == text
    assert resumed.stderr.count("already done, kept") == len(finished_before)
    # Every chunk's frames equal the uninterrupted run's, bit for bit.
    for got, want in zip(chunk_frames(out), chunk_frames(reference_run), strict=True):
        np.testing.assert_array_equal(got, want)
    assert video_info(out / "video.mp4")[0] == SAMPLE_FRAMES


@pytest.mark.slow
def test_settings_the_checkpoint_or_machine_cannot_run_are_refused_before_loading(
        tiny_ckpt: Path, sample_dir: Path, tmp_path: Path) -> None:
    """Issue #14, defect 4: one line naming the value and the fix, before any model loads
    (before: a traceback after the models had loaded)."""
    import torch

    layers = json.loads((tiny_ckpt / "720p-81f-base" / "model_config.json").read_text())[
        "num_layers"]
    cases = [(["--steps", "1", "-s", "0", "2"], "-s 0 2"),
             (["-b", "0", str(layers + 1)], "model_config.json")]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "no CUDA GPU"))
    for extra, words in cases:
        proc = run(generate_args(tiny_ckpt, sample_dir, tmp_path / "out", *extra))
        assert proc.returncode == 2, proc.stderr
        assert words in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "out" / "conditions.safetensors").exists()  # nothing loaded


def test_a_keyword_past_the_text_encoders_reach_is_one_line_before_the_encoder_loads(
        tiny_ckpt: Path, sample_dir: Path, tmp_path: Path) -> None:
    prompt = tmp_path / "long.txt"
    prompt.write_text("a " * 700 + "woman dances in a park")
    args = generate_args(tiny_ckpt, sample_dir, tmp_path / "out")
    args[args.index("--prompt-file") + 1] = str(prompt)
    proc = run(args)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("posegen: error")]
    assert len(errors) == 1 and "512 tokens" in errors[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "conditions.safetensors").exists()
