"""`posegen-tui --demo` in a real terminal, as a newcomer would meet it: the timeline fills,
the terminal goes away, and the reopened app finds the session still going or done."""

from __future__ import annotations

import os
import re
import shutil
import signal
from pathlib import Path

import pytest
from test_app_terminal import Tmux, tmux, wait_for  # noqa: F401  (fixture)

from sessions.paths import db_path
from sessions.store import Store

pytestmark = [pytest.mark.tmux, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]

DONE = re.compile(r"(\d)/5 chunks")


def chunks_done(screen: str) -> int:
    m = DONE.search(screen)
    return int(m.group(1)) if m else -1


def test_demo_in_tmux_detach_and_reattach(tmux: Tmux) -> None:  # noqa: F811
    home = Path(tmux.env["POSEGEN_HOME"])
    tmux.start("demo", "--demo")
    # First start writes the tiny checkpoint and inputs, then the engine runs.
    wait_for(lambda: "RANDOM weights" in tmux.screen("demo"), timeout=180)
    wait_for(lambda: chunks_done(tmux.screen("demo")) >= 1, timeout=240)
    first = tmux.screen("demo")
    assert "Session 1" in first and "#" in first  # a done chunk on the timeline
    seen = chunks_done(first)

    tmux("kill-server")  # detach the hard way: the terminal is gone
    store = Store(db_path(home))
    try:
        tmux.start("again")  # no --demo: re-attach opens the running session
        wait_for(lambda: "Session 1" in tmux.screen("again"), timeout=60)
        wait_for(lambda: chunks_done(tmux.screen("again")) >= seen, timeout=60)
        screen = tmux.screen("again")
        assert re.search(r"RUNNING|MERGING|DONE", screen), screen
        wait_for(lambda: store.get_session(1)["state"] == "done", timeout=300)
        wait_for(lambda: "DONE" in tmux.screen("again") and
                 chunks_done(tmux.screen("again")) == 5, timeout=30)
        tmux("send-keys", "-t", "t:again", "q")
    finally:
        for w in store.workers(1, live_only=True):
            os.kill(w["pid"], signal.SIGKILL)
