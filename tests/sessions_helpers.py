"""Helpers for tests that drive the real `posegen` session commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import TINY_ARGS

ROOT = Path(__file__).resolve().parents[1]


def session_env(home: Path) -> dict[str, str]:
    return dict(os.environ, POSEGEN_HOME=str(home), PYTHONUNBUFFERED="1",
                POSEGEN_HEARTBEAT_S="0.5", POSEGEN_WORKER_TIMEOUT_S="4")


def posegen(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sessions.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=session_env(home), cwd=ROOT)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def init_project(home: Path, inputs: Path, project: str = "demo") -> None:
    ok(posegen(home, "init", project, "--image", str(inputs / "reference.png"),
               "--pose", str(inputs / "pose.mp4"), "--hand", str(inputs / "hand.mp4"),
               "--prompt-file", str(inputs / "prompt.txt")))


def make_session(home: Path, ckpt: Path, project: str = "demo", *extra: str) -> int:
    out = ok(posegen(home, "session", "new", project, "--ckpt", str(ckpt), "--json",
                     *TINY_ARGS, *extra))
    return int(json.loads(out)["id"])


def status(home: Path, session: int) -> dict:
    return json.loads(ok(posegen(home, "status", str(session), "--json")))
