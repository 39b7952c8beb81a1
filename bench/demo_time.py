"""How long the demo takes, and how fast `posegen session new` answers (issues #14, #15).

    python bench/demo_time.py

In a temporary POSEGEN_HOME, as the app's demo does: writes the tiny random
checkpoint and synthetic inputs (through `sessions.tasks`, as the app does), creates
the demo project and session through the CLI (timed: it checks every setting without
loading torch), starts one CPU worker and waits for the merged video. Prints the
seconds of each part as JSON, then a table; the README's demo claim quotes it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sessions.tasks import run_task  # noqa: E402


def posegen(home: Path, *args: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "sessions.cli", *args], cwd=ROOT,
                         env=dict(os.environ, POSEGEN_HOME=str(home)), capture_output=True,
                         text=True, check=True).stdout
    return time.perf_counter() - t0, out


def first_phase_delay(home: Path, session_id: int) -> float:
    """Seconds from the first worker's start to the first phase event (issue #15's target:
    a non-empty phase within 5 s)."""
    from sessions.paths import db_path
    from sessions.store import Store

    with Store(db_path(home)) as store:
        events = store.events(session_id, limit=100_000)
    start = min(e["t"] for e in events if e["kind"] == "worker_start")
    return min(e["t"] for e in events if e["kind"] == "phase") - start


def main() -> int:
    rows: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        ckpt, inputs = home / "demo" / "ckpt", home / "demo" / "inputs"
        t0 = time.perf_counter()
        run_task("make_tiny", {"dir": str(ckpt)}, home=home)
        rows["tiny checkpoint"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        run_task("sample_inputs", {"dir": str(inputs), "frames": 300, "height": 256,
                                   "width": 128}, home=home)
        rows["synthetic inputs"] = time.perf_counter() - t0
        rows["posegen init"], _ = posegen(
            home, "init", "demo", "--image", str(inputs / "reference.png"), "--pose",
            str(inputs / "pose.mp4"), "--hand", str(inputs / "hand.mp4"), "--prompt-file",
            str(inputs / "prompt.txt"))
        # The demo's settings (posegen_tui/data/demo.py: DEMO_SETTINGS).
        rows["posegen session new"], out = posegen(
            home, "session", "new", "demo", "--ckpt", str(ckpt), "--json", "--height", "128",
            "--width", "64", "-s", "0", "2", "-b", "2", "4", "--steps", "10")
        sid = str(json.loads(out)["id"])
        rows["posegen --version (start-up floor)"] = posegen(home, "--version")[0]
        t0 = time.perf_counter()
        posegen(home, "start", sid)
        posegen(home, "wait", sid, "--timeout", "3600")
        rows["generation (start to merged video)"] = time.perf_counter() - t0
        status = json.loads(posegen(home, "status", sid, "--json")[1])
        rows["first phase shown after the worker started"] = first_phase_delay(home, int(sid))
        for c in status["chunks"]:
            rows[f"chunk {c['index']} ({c['role']})"] = float(c.get("seconds") or 0.0)
    rows["demo total (no install)"] = sum(
        v for k, v in rows.items() if k in ("tiny checkpoint", "synthetic inputs",
                                            "posegen init", "posegen session new",
                                            "generation (start to merged video)"))
    print(json.dumps({k: round(v, 2) for k, v in rows.items()}))
    for name, s in rows.items():
        print(f"{name:<36} {s:8.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
