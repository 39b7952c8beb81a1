"""bench/dit_step.py at tiny size on the CPU: every code path the H100 run takes except
CUDA-only parts (SDPA GPU kernels, -p placement), which it reports as skipped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.compiler import unavailable_reason

ROOT = Path(__file__).resolve().parent.parent


def test_dit_step_bench_runs_at_tiny_size(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "dit_step.py"), "--preset", "tiny",
         "--device", "cpu", "--out", str(out), "--work", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads((out / "dit_step.json").read_text())
    steps = r["steps"]
    for name in ("bare", "anchor", "base", "bare_again", "release_base"):
        assert steps[name]["seconds"] > 0, name
    # the anchor wrote one input per share block and pass, and the base read all of them
    b0, b1 = steps["share"]["blocks"]
    n_tokens = steps["tokens"]
    one = n_tokens * r["model"]["config"]["dim"] * 4  # float32 on the CPU
    assert steps["anchor"]["input_bytes_step"] == (b1 - b0) * 2 * one
    assert steps["base"]["bytes_read"] == steps["anchor"]["input_bytes_step"]
    # the anchor ran as in a chunk: its share steps and one more, to every write on disk
    a = steps["anchor"]
    s0, s1 = steps["share"]["steps"]
    assert a["share_steps_run"] == s1 - s0
    assert len(a["step_seconds"]) == a["steps_run"] == s1 - s0 + 1
    assert a["wall"] >= sum(a["step_seconds"])
    # the release formulation ran every part it is timed by
    assert set(steps["release_base"]["parts"]) == {"torch_load", "mask_build_cpu",
                                                   "mask_copy", "masked_attention"}
    cb = steps["cache_bytes"]
    assert cb["release_total"] == cb["release_kv"] + cb["release_qk"]
    assert 0 < cb["ratio"] < 0.4  # one input per block against K, V and every block's q/k
    assert r["attention"]["math"]["rel_error"] < 1e-5
    assert "CUDA" in r["budgets"]["skipped"]
    table = proc.stdout[proc.stdout.index("## dit_step"):]
    assert "| base |" in table and "| release_base |" in table and "anchor cache" in table
    assert "anchor as in a chunk" in table


@pytest.mark.slow  # compiles the tiny DiT's blocks twice (two processes): ~45 s
def test_dit_step_bench_compiled_rows_at_tiny_size(tmp_path: Path) -> None:
    reason = unavailable_reason("cpu")
    if reason is not None:
        pytest.skip(f"torch.compile cannot compile here: {reason}")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "dit_step.py"), "--preset", "tiny",
         "--device", "cpu", "--compile", "--out", str(out), "--work", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads((out / "dit_step.json").read_text())
    steps, comp = r["steps"], r["compile"]
    for name in ("bare", "anchor", "base", "bare_again"):
        assert steps[name]["seconds"] > 0 and steps[f"{name}_compiled"]["seconds"] > 0, name
    assert "--compile" in steps["release_base"]["skipped"]
    assert comp["first_compile_seconds"] > comp["second_call_seconds"]
    assert comp["block_eager"]["seconds"] > 0 and comp["block_compiled"]["seconds"] > 0
    probe = comp["probe"]
    assert probe["returncode"] == 0 and probe["compile_seconds"] > 0, probe
    assert probe["cache_dir"] == comp["cache_dir"] == str(tmp_path / "work" / "compile-cache")
    num = comp["numerics"]
    assert num["compiled_runs_identical"] is True and num["bare_rel_error"] < 1e-5
    table = proc.stdout[proc.stdout.index("## dit_step"):]
    assert "| bare_compiled |" in table and "first compile, this process" in table
    assert "new process, warm cache" in table
