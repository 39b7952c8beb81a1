"""Shared fixtures: a tiny random-weight checkpoint and synthetic inputs, made once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Shared CI and dev machines have 2 cores; spinning OpenMP threads of concurrent test
# processes would slow each other by orders of magnitude.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Small sizes the tiny checkpoint is meant for: 64x32 pixels, 17-frame chunks.
TINY_ARGS = ["--height", "64", "--width", "32", "--frames", "17", "--head", "5", "--tail", "4",
             "-s", "0", "2", "-b", "2", "4"]
SAMPLE_FRAMES = 60  # with 17/5/4 chunks: K = 5
SAMPLE_FPS = 30
REFERENCE_STEPS = "8"


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny matmuls on a shared 2-core box are far faster without OpenMP spinning."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def reference_run(tiny_ckpt: Path, sample_dir: Path, tmp_path_factory: pytest.TempPathFactory
                  ) -> Path:
    """An uninterrupted one-process `posegen generate` on the tiny checkpoint (8 steps)."""
    out = tmp_path_factory.mktemp("reference")
    proc = run(generate_args(tiny_ckpt, sample_dir, out, "--steps", REFERENCE_STEPS))
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine.checkpoint.tiny import make_tiny

    root = tmp_path_factory.mktemp("tiny-ckpt")
    make_tiny(root)
    return root


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine.sample_inputs import write_sample_inputs

    root = tmp_path_factory.mktemp("inputs")
    write_sample_inputs(root, frames=SAMPLE_FRAMES, fps=SAMPLE_FPS, height=128, width=64)
    return root


def posegen_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "engine.cli", *args]


def generate_args(ckpt: Path, inputs: Path, out: Path, *extra: str) -> list[str]:
    return posegen_cmd(
        "generate", "--ckpt", str(ckpt), "--image", str(inputs / "reference.png"),
        "--pose", str(inputs / "pose.mp4"), "--hand", str(inputs / "hand.mp4"),
        "--prompt-file", str(inputs / "prompt.txt"), "--out", str(out), *TINY_ARGS, *extra)


def run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=Path(__file__).resolve().parents[1])


def mid_chunk_state(out: Path, steps: int) -> Path | None:
    """A chunk's saved step state between its first and last step (a kill lands mid-chunk),
    or None."""
    from safetensors import safe_open

    for state in (out / "chunks").glob("*/state.safetensors"):
        try:
            with safe_open(str(state), framework="pt") as f:
                next_step = int((f.metadata() or {})["next_step"])
        except Exception:
            continue
        if 0 < next_step < steps:
            return state
    return None
