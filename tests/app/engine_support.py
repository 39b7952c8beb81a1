"""Helpers for tests that run the tiny engine under the app: a session, and cleanup."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from posegen_tui.data import actions
from posegen_tui.data.store_access import opened
from sessions.store import pid_alive

# The small sizes the tiny checkpoint is meant for (tests/conftest.py TINY_ARGS).
TINY_FORM = {"height": "64", "width": "32", "frames": "17", "head": "5", "tail": "4",
             "steps": "4", "share_steps": "0 2", "share_blocks": "2 4"}


def make_session(home: Path, ckpt: Path, inputs: Path) -> int:
    project = actions.create_project(home, {
        "name": "tiny", "image": str(inputs / "reference.png"),
        "pose": str(inputs / "pose.mp4"), "hand": str(inputs / "hand.mp4"),
        "prompt": (inputs / "prompt.txt").read_text(), "framing": "half-body"})
    values = {"ckpt": str(ckpt), "device": "cpu", "budget": "none", "cfg": "5", "seed": "42",
              "anchor": "0", **TINY_FORM}
    return actions.create_session(home, project, values)


def kill_workers(home: Path) -> None:
    """Stop worker processes a failed test left behind (only this test's, by pid)."""
    try:
        with opened(home) as store:
            pids = [w["pid"] for s in store.list_sessions(include_archived=True)
                    for w in store.workers(s["id"]) if w["ended_at"] is None]
    except Exception:
        return
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
