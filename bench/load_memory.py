"""Peak host memory and time of loading one DiT folder (read shards, LoRA merge, build).

    python bench/load_memory.py --ckpt DIR [--kind base] [--dtype bfloat16]

Runs the engine's real ``load_dit`` in this process and prints one JSON line: the
bytes of the loaded weights, the process's peak RSS (``ru_maxrss``) before and after,
and the seconds of each loading step. Make a checkpoint first, at a size that fits the
machine, e.g. ``posegen ckpt make-full DIR --scale tiny --dit-dim 1024 --dit-layers 8``.
Issue #13's target is a peak under 1.25x the bytes of the weights the process holds.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from engine.checkpoint.dit_loader import load_dit  # noqa: E402


def rss_peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", type=Path, required=True)
    p.add_argument("--kind", default="base", choices=["base", "cond"])
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    args = p.parse_args()
    folder = args.ckpt / ("720p-81f-base" if args.kind == "base" else "720p-81f-cond")
    before = rss_peak_bytes()
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    model = load_dit(folder, dtype=getattr(torch, args.dtype), seconds=seconds)
    total = time.perf_counter() - t0
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    peak = rss_peak_bytes()
    print(json.dumps({
        "weights_bytes": weights, "rss_peak_before_load": before, "rss_peak": peak,
        "peak_over_weights": round((peak - before) / weights, 3),
        "seconds": round(total, 2), "steps": {k: round(v, 2) for k, v in seconds.items()},
        "files_bytes": sum(f.stat().st_size for f in folder.glob("*.bin"))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
