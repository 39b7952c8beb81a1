"""bench/dit_step.py at tiny size on the CPU: every code path the H100 run takes except
CUDA-only parts (SDPA GPU kernels, -p placement), which it reports as skipped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
