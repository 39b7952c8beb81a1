"""`posegen-tui --demo`: a tiny random-weight project in $POSEGEN_HOME, made once, then run.

The checkpoint and inputs are written by the engine's own tools in `posegen`
subprocesses (they import torch; the app stays light), and the session is
made by `posegen session new`, like a person would.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from engine.prompt import read_prompt_file
from posegen_tui.data.actions import posegen, resume, start
from posegen_tui.data.store_access import opened
from sessions.control import ACTIVE_STATES, effective_state
from sessions.store import StoreError

PROJECT = "demo"
# Small sizes for the tiny checkpoint; 300 frames at 81/21/20 make 5 chunks.
SESSION_ARGS = ["--height", "128", "--width", "64", "-s", "0", "2", "-b", "2", "4",
                "--steps", "10"]


def prepare_demo(home: Path, say: Callable[[str], None] = lambda _: None) -> int:
    """Make what is missing, start the engine unless it runs or is done; returns the session."""
    root = home / "demo"
    ckpt, inputs = root / "ckpt", root / "inputs"
    if not (ckpt / "README-TINY.txt").is_file():
        say("writing a tiny checkpoint with RANDOM weights…")
        posegen(home, "ckpt", "make-tiny", str(ckpt))
    if not (inputs / "prompt.txt").is_file():
        say("writing synthetic inputs (300 frames)…")
        posegen(home, "sample-inputs", str(inputs), "--frames", "300", "--height", "256",
                "--width", "128")
    with opened(home) as store:
        try:
            project = store.get_project(PROJECT)
        except StoreError:
            say("creating the demo project…")
            store.create_project(
                PROJECT, image=str(inputs / "reference.png"), pose=str(inputs / "pose.mp4"),
                hand=str(inputs / "hand.mp4"), prompt=read_prompt_file(inputs / "prompt.txt"),
                framing="half-body")
            project = store.get_project(PROJECT)
        sessions = store.list_sessions(project["id"], include_archived=True)
    if sessions:
        sid = int(sessions[-1]["id"])
    else:
        say("creating the demo session…")
        out = posegen(home, "session", "new", PROJECT, "--ckpt", str(ckpt), "--json",
                      *SESSION_ARGS)
        sid = int(json.loads(out.splitlines()[-1])["id"])
    with opened(home) as store:
        state = effective_state(store, sid)
    if state == "created":
        say("starting the engine…")
        start(home, sid)
    elif state not in (*ACTIVE_STATES, "done"):  # paused, stopped, failed, interrupted
        say("resuming the engine…")
        resume(home, sid)
    return sid
