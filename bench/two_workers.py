"""Run one session with one worker, then the same session with several, and compare.

For issue #8's run (two GPUs, one worker each) and, where only one GPU is lent,
for exercising the same code path with two workers sharing it:

    python bench/two_workers.py --ckpt CKPT --inputs DIR --gpus-a 0 --gpus-b 0,1 --out $OUT

Each run is a real session: `posegen init`, `posegen session new`, `posegen start
--gpus ...`, `posegen wait`. Afterwards the session store says when each chunk ran
and on which worker. Reported per run: makespan (first chunk start to the merged
video), the speed-up against the one-worker run and against the ideal, per-worker
busy and idle time, per-GPU peak VRAM (torch, per chunk, max over the worker's
chunks), and whether the two runs' chunk frames are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sessions.paths import db_path  # noqa: E402
from sessions.store import Store  # noqa: E402

GiB = 1 << 30


def posegen(home: Path, *args: str) -> str:
    env = dict(os.environ, POSEGEN_HOME=str(home))
    proc = subprocess.run([sys.executable, "-m", "sessions.cli", *args], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"posegen {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def run_session(home: Path, name: str, gpus: str, args: argparse.Namespace) -> dict[str, Any]:
    inp = Path(args.inputs)
    posegen(home, "init", name, "--image", str(inp / "reference.png"), "--pose",
            str(inp / "pose.mp4"), "--hand", str(inp / "hand.mp4"), "--prompt-file",
            str(inp / "prompt.txt"))
    sid = json.loads(posegen(home, "session", "new", name, "--ckpt", args.ckpt, "--device",
                             "cuda", "--gpus", gpus, "--json", *args.generation))["id"]
    t0 = time.time()
    posegen(home, "start", str(sid), "--gpus", gpus)
    posegen(home, "wait", str(sid), "--timeout", str(args.timeout))
    wall = time.time() - t0
    store = Store(db_path(home))
    session = store.get_session(sid)
    chunks = store.chunks(sid)
    workers = store.workers(sid)
    events = store.events(sid, limit=10000)
    starts = [c["started_at"] for c in chunks]
    merged = [e["t"] for e in events if e["kind"] == "merged"] or [max(c["finished_at"]
                                                                      for c in chunks)]
    makespan = max(merged) - min(starts)
    per_worker: dict[int, dict[str, Any]] = {}
    for c in chunks:
        w = per_worker.setdefault(c["worker_id"], {"busy_s": 0.0, "chunks": [], "peak": 0})
        w["busy_s"] += c["finished_at"] - c["started_at"]
        w["chunks"].append(c["idx"])
        w["peak"] = max(w["peak"], c.get("peak_vram_torch") or 0)
    for wid, w in per_worker.items():
        row = next(x for x in workers if x["id"] == wid)
        w.update(device=row["device"], idle_s=makespan - w["busy_s"])
    frames = {c["idx"]: np.load(Path(session["workspace"]) / "chunks" / f"{c['idx']:03d}"
                                / "frames.npy") for c in chunks}
    return {"session": sid, "gpus": gpus, "wall_s": wall, "makespan_s": makespan,
            "workers": per_worker, "frames": frames,
            "chunk_seconds": {c["idx"]: c["finished_at"] - c["started_at"] for c in chunks},
            "state": session["state"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--inputs", required=True, help="folder with reference.png, pose.mp4, "
                   "hand.mp4, prompt.txt (posegen sample-inputs)")
    p.add_argument("--gpus-a", default="0")
    p.add_argument("--gpus-b", default="0,1")
    p.add_argument("--home", default="/tmp/two_workers_home")
    p.add_argument("--out", default=os.environ.get("OUT", "/tmp/two_workers_out"))
    p.add_argument("--timeout", type=float, default=500)
    p.add_argument("generation", nargs=argparse.REMAINDER,
                   help="after --: posegen session new options (--steps, --height, ...)")
    args = p.parse_args()
    args.generation = [a for a in args.generation if a != "--"]
    home = Path(args.home)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    a = run_session(home, "one", args.gpus_a, args)
    b = run_session(home, "many", args.gpus_b, args)
    n_b = len(args.gpus_b.split(","))
    diffs = {i: int(np.abs(a["frames"][i].astype(int) - b["frames"][i].astype(int)).max())
             for i in a["frames"]}
    speedup = a["makespan_s"] / b["makespan_s"]
    result = {"a": {k: v for k, v in a.items() if k != "frames"},
              "b": {k: v for k, v in b.items() if k != "frames"},
              "speedup": speedup, "ideal": n_b, "efficiency": speedup / n_b,
              "frame_max_abs_diff": diffs}
    (out / "two_workers.json").write_text(json.dumps(result, indent=1, default=str))
    lines = ["| run | --gpus | makespan s | speed-up | of ideal | worker: device, chunks, "
             "busy s, idle s, peak VRAM MiB |", "|---|---|---|---|---|---|"]
    for name, r in (("one worker", a), (f"{n_b} workers", b)):
        ws = "; ".join(f"{w['device']} {w['chunks']} {w['busy_s']:.1f} {w['idle_s']:.1f} "
                       f"{w['peak'] / 2**20:.0f}" for w in r["workers"].values())
        sp = r["makespan_s"] and a["makespan_s"] / r["makespan_s"]
        ideal = len(r["gpus"].split(","))
        lines.append(f"| {name} | {r['gpus']} | {r['makespan_s']:.1f} | {sp:.2f}x | "
                     f"{sp / ideal:.0%} | {ws} |")
    lines.append("")
    lines.append(f"frames, max abs difference per chunk (uint8): {diffs}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
