"""How fast `posegen` answers: `status` over 10 sessions of 31 chunks, `--help`, against
a bare `python -c pass` (issue #15's target: `posegen status` under 0.3 s).

    python bench/cli_startup.py [--repeat 7]

Builds the store in a temporary POSEGEN_HOME through the store's own API (no workers),
then times each command as a new process, as a user's shell would run it; prints the
median seconds and the ratio to `python -c pass`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.chunk_plan import ChunkSpec, make_plan  # noqa: E402
from sessions.paths import db_path, workspace_dir  # noqa: E402
from sessions.store import Store  # noqa: E402


def build(home: Path, sessions: int, frames: int) -> None:
    store = Store(db_path(home))
    project = store.create_project("bench", image="/x/ref.png", pose="/x/pose.mp4",
                                   hand="/x/hand.mp4", prompt="a woman dances",
                                   framing="half-body")
    plan = make_plan(frames, ChunkSpec(81, 21, 20))
    rows = [{"idx": c.index, "role": c.role, "start_frame": c.start, "end_frame": c.end,
             "deps": list(plan.dependencies(c.index)), "steps": 25} for c in plan.chunks]
    for _ in range(sessions):
        sid = store.create_session(project, settings={}, seed=42, steps=25, cfg=5.0,
                                   share_steps="0 2", share_blocks="34 40", anchor=0,
                                   budget="auto", ckpt="/x/ckpt", device="cuda:0",
                                   gpus="0", workspace="")
        store.set_workspace(sid, str(workspace_dir(sid, home)))
        store.init_chunks(sid, rows)


def median_seconds(cmd: list[str], env: dict[str, str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=7)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        build(home, sessions=10, frames=1800)  # 1800 frames at 81/21/20: 31 chunks
        env = dict(os.environ, POSEGEN_HOME=str(home))
        py = [sys.executable]
        rows = {"python -c pass": median_seconds(py + ["-c", "pass"], env, args.repeat)}
        for name, cmd in (("posegen status", ["status"]), ("posegen status 10", ["status", "10"]),
                          ("posegen --help", ["--help"])):
            rows[name] = median_seconds(py + ["-m", "sessions.cli", *cmd], env, args.repeat)
    base = rows["python -c pass"]
    print(json.dumps({k: round(v, 3) for k, v in rows.items()}))
    for name, s in rows.items():
        print(f"{name:<20} {s:6.3f} s  {s / base:5.1f}x python -c pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
