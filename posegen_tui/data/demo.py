"""`posegen-tui --demo`: a tiny random-weight project in $POSEGEN_HOME, made once, then run.

The checkpoint and inputs are written by the engine's own tools in child
processes (`sessions.tasks`: they import torch, the app stays light), and the
project and session are made by the command layer, as `posegen init` and
`posegen session new` make them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from engine.prompt import read_prompt_file
from engine.settings import JobSettings
from posegen_tui.data.actions import resume, start
from posegen_tui.data.store_access import opened
from sessions import commands
from sessions.control import ACTIVE_STATES, effective_state
from sessions.store import StoreError
from sessions.tasks import run_task

PROJECT = "demo"
# Small sizes for the tiny checkpoint; 300 frames at 81/21/20 make 5 chunks.
DEMO_SETTINGS = JobSettings(height=128, width=64, share_steps=(0, 2), share_blocks=(2, 4),
                            steps=10)


def prepare_demo(home: Path, say: Callable[[str], None] = lambda _: None) -> int:
    """Make what is missing, start the engine unless it runs or is done; returns the session."""
    root = home / "demo"
    ckpt, inputs = root / "ckpt", root / "inputs"
    if not (ckpt / "README-TINY.txt").is_file():
        say("writing a tiny checkpoint with RANDOM weights…")
        run_task("make_tiny", {"dir": str(ckpt)}, home=home)
    if not (inputs / "prompt.txt").is_file():
        say("writing synthetic inputs (300 frames)…")
        run_task("sample_inputs", {"dir": str(inputs), "frames": 300, "height": 256,
                                   "width": 128}, home=home)
    with opened(home) as store:
        try:
            project = store.get_project(PROJECT)
        except StoreError:
            say("creating the demo project…")
            commands.create_project(store, commands.NewProject(
                PROJECT, image=inputs / "reference.png", pose=inputs / "pose.mp4",
                hand=inputs / "hand.mp4", prompt=read_prompt_file(inputs / "prompt.txt"),
                framing="half-body"))
            project = store.get_project(PROJECT)
        sessions = store.list_sessions(project["id"], include_archived=True)
    if sessions:
        sid = int(sessions[-1]["id"])
    else:
        say("creating the demo session…")
        with opened(home) as store:
            sid = commands.create_session(store, commands.NewSession(
                PROJECT, DEMO_SETTINGS, ckpt=ckpt)).id
    with opened(home) as store:
        state = effective_state(store, sid)
    if state == "created":
        say("starting the engine…")
        start(home, sid)
    elif state not in (*ACTIVE_STATES, "done"):  # paused, stopped, failed, interrupted
        say("resuming the engine…")
        resume(home, sid)
    return sid
