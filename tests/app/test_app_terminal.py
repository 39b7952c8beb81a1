"""In a real terminal (tmux): q quits, a vanished terminal ends the app, and two app
instances on one database show the same thing and follow its changes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from scenario import Clock, build

from sessions.paths import db_path
from sessions.store import Store, pid_alive

pytestmark = [pytest.mark.tmux,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]


class Tmux:
    """A private tmux server (its own socket), so no user session is touched."""

    def __init__(self, socket: Path, env: dict[str, str]) -> None:
        self.socket, self.env = socket, env

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", str(self.socket), *args], capture_output=True,
                              text=True, timeout=30, env=self.env).stdout

    def start(self, name: str, *app_args: str) -> int:
        exports = " ".join(f"{k}={v}" for k, v in self.env.items() if k.startswith("POSEGEN"))
        command = f"exec env {exports} {sys.executable} -m posegen_tui {' '.join(app_args)}"
        if self.alive():
            self("new-window", "-t", "t", "-n", name, command)
        else:
            self("new-session", "-d", "-s", "t", "-n", name, "-x", "80", "-y", "24", command)
        return int(self("list-panes", "-t", f"t:{name}", "-F", "#{pane_pid}").split()[0])

    def alive(self) -> bool:
        return subprocess.run(["tmux", "-S", str(self.socket), "has-session", "-t", "t"],
                              capture_output=True, env=self.env).returncode == 0

    def screen(self, name: str) -> str:
        return self("capture-pane", "-p", "-t", f"t:{name}")


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    home = tmp_path / "home"
    env = dict(os.environ, POSEGEN_HOME=str(home), POSEGEN_TUI_GPU="none",
               TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    t = Tmux(tmp_path / "tmux.sock", env)
    yield t
    t("kill-server")


def test_q_quits_and_hangup_ends_the_app(tmux: Tmux) -> None:
    pid = tmux.start("one", "--no-attach")
    wait_for(lambda: "projects and sessions" in tmux.screen("one"))
    tmux("send-keys", "-t", "t:one", "q")
    wait_for(lambda: not pid_alive(pid), timeout=15)

    pid = tmux.start("two", "--no-attach")
    wait_for(lambda: "projects and sessions" in tmux.screen("two"))
    tmux("kill-server")  # the terminal is gone: SIGHUP to the app
    wait_for(lambda: not pid_alive(pid), timeout=15)


def test_two_instances_agree_and_follow_the_store(tmux: Tmux, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    home = Path(tmux.env["POSEGEN_HOME"])
    clock = Clock()
    with monkeypatch.context() as m:
        m.setattr(time, "time", clock)
        build(home, clock)

    def rows(name: str) -> list[str]:
        return [ln for ln in tmux.screen(name).splitlines() if ln.startswith((" base", " cond"))]

    tmux.start("a", "--session", "3")
    tmux.start("b", "--session", "3")
    wait_for(lambda: len(rows("a")) == 2 and len(rows("b")) == 2)
    assert rows("a") == rows("b")
    assert "!" in rows("a")[0] and "~" in rows("a")[1]  # failed chunk 4, stale chunk 1

    with Store(db_path(home)) as store:
        store.retry_chunk(3, 4)  # a third party changes the store
    wait_for(lambda: "!" not in "".join(rows("a")) and "!" not in "".join(rows("b")))
    assert rows("a") == rows("b")
