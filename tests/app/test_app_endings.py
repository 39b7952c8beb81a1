"""Being told (issue #17): a session that ends rings the bell, shows a toast and sends a
desktop notification escape the terminal understands, once; old endings stay quiet."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from snapshot_support import until

import posegen_tui.app as app_module
from posegen_tui.app import PosegenApp
from posegen_tui.data.endings import EndWatcher, SessionBrief
from posegen_tui.gpu.fake import NoGpuSource
from posegen_tui.term_notify import desktop_escape, protocol
from sessions.paths import db_path
from sessions.store import Store

TERMINAL_VARS = ("TERM", "TERM_PROGRAM", "TMUX", "STY", "KITTY_WINDOW_ID", "WT_SESSION",
                 "VTE_VERSION", "KONSOLE_VERSION", "LC_TERMINAL", "WEZTERM_PANE",
                 "GHOSTTY_RESOURCES_DIR", "POSEGEN_NOTIFY")


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in TERMINAL_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def make_home(tmp_path: Path) -> tuple[Path, int, int]:
    """A running session and one that was done before the app started."""
    home = tmp_path / "home"
    with Store(db_path(home)) as store:
        pid = store.create_project("dance", image="ref.png", pose="pose.mp4", hand="hand.mp4",
                                   prompt="a woman dances", framing="half-body")
        ids = []
        for n in (1, 2):
            ws = home / "sessions" / f"{n:04d}"
            ws.mkdir(parents=True)
            ids.append(store.create_session(
                pid, settings={}, seed=1, steps=2, cfg=5.0, share_steps="0",
                share_blocks="2 4", anchor=0, budget=None, ckpt="/ckpt", device="cpu",
                gpus="cpu", workspace=str(ws.resolve())))
            store.set_session_state(ids[-1], "running")
        (home / "sessions" / "0002" / "video.mp4").write_bytes(b"old")
        store.set_session_state(ids[1], "done")
    return home, ids[0], ids[1]


def run_app(home: Path, monkeypatch: pytest.MonkeyPatch, change: object
            ) -> tuple[list[str], list[str], int]:
    """Start the app, let ``change(store)`` happen, and collect toasts, escapes, bells."""
    reads = [0]
    real = app_module.load_states

    def counted(h: Path) -> dict[int, SessionBrief]:
        out = real(h)
        reads[0] += 1
        return out

    monkeypatch.setattr(app_module, "load_states", counted)
    toasts: list[str] = []
    escapes: list[str] = []
    bells = [0]

    async def main() -> None:
        app = PosegenApp(home=home, gpu=NoGpuSource(), auto_open=False, blink=False,
                         poll_s=0.05)
        monkeypatch.setattr(app, "bell", lambda: bells.__setitem__(0, bells[0] + 1))
        real_notify = app.notify

        def notify(message: str, **kw: object) -> None:
            toasts.append(message)
            real_notify(message, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(app, "notify", notify)
        async with app.run_test(size=(100, 30)) as pilot:
            driver = app._driver
            assert driver is not None
            monkeypatch.setattr(driver, "write", lambda data: escapes.append(data))
            await until(pilot, lambda: app.endings.known is not None)
            with Store(db_path(home)) as store:
                change(store)  # type: ignore[operator]
            seen = reads[0]
            # Two more reads after the one that can see the change: nothing is said twice.
            await until(pilot, lambda: reads[0] >= seen + 3, timeout=30)

    asyncio.run(main())
    return toasts, [e for e in escapes if e.startswith("\x1b]")], bells[0]


def test_an_ending_is_told_once_with_bell_toast_and_escape(
        tmp_path: Path, bare_env: pytest.MonkeyPatch) -> None:
    home, running, done = make_home(tmp_path)
    bare_env.setenv("TERM", "xterm-256color")
    bare_env.setenv("TERM_PROGRAM", "WezTerm")

    def finish(store: Store) -> None:
        (home / "sessions" / f"{running:04d}" / "video.mp4").write_bytes(b"new")
        store.set_session_state(running, "done")
        store.set_session_state(done, "stopped")  # a retry reopened the old one: no news

    toasts, escapes, bells = run_app(home, bare_env, finish)
    message = f"session {running} of dance: done (sessions/{running:04d}/video.mp4)"
    assert toasts == [message]
    assert bells == 1
    assert escapes == [f"\x1b]9;posegen: {message}\x07"]


def test_posegen_notify_0_keeps_the_bell_and_toast_but_sends_no_escape(
        tmp_path: Path, bare_env: pytest.MonkeyPatch) -> None:
    home, running, _ = make_home(tmp_path)
    bare_env.setenv("TERM_PROGRAM", "iTerm.app")
    bare_env.setenv("POSEGEN_NOTIFY", "0")

    def fail(store: Store) -> None:
        store.set_session_state(running, "failed", error="RuntimeError: out of memory\nmore")

    toasts, escapes, bells = run_app(home, bare_env, fail)
    assert toasts == [f"session {running} of dance: failed (RuntimeError: out of memory)"]
    assert (bells, escapes) == (1, [])


# -- which escape, by terminal ---------------------------------------------------------

@pytest.mark.parametrize(("env", "want"), [
    ({"TERM_PROGRAM": "iTerm.app"}, "osc9"),
    ({"LC_TERMINAL": "iTerm2", "TERM": "xterm-256color"}, "osc9"),  # over SSH
    ({"TERM": "xterm-ghostty"}, "osc9"),
    ({"WT_SESSION": "abc"}, "osc9"),
    ({"TERM": "xterm-kitty", "KITTY_WINDOW_ID": "1"}, "osc99"),
    ({"TERM": "xterm-kitty", "VTE_VERSION": "7600"}, "osc99"),  # kitty started from GNOME
    ({"TERM": "foot"}, "osc777"),
    ({"TERM": "rxvt-unicode-256color"}, "osc777"),
    ({"VTE_VERSION": "7600", "TERM": "xterm-256color"}, "osc777"),
    ({"KONSOLE_VERSION": "230805"}, "osc777"),
    ({"TERM": "xterm-256color"}, None),
    ({"TERM": "screen", "STY": "1.pts", "VTE_VERSION": "7600"}, None),
    ({"TMUX": "/tmp/t,1,0", "TERM": "tmux-256color", "TERM_PROGRAM": "tmux"}, None),
    ({"TERM_PROGRAM": "WezTerm", "POSEGEN_NOTIFY": "off"}, None),
    ({"TERM": "xterm-256color", "POSEGEN_NOTIFY": "osc777"}, "osc777"),
])
def test_the_protocol_follows_the_terminal(env: dict[str, str], want: str | None) -> None:
    assert protocol(env) == want


def test_the_escapes_bytes() -> None:
    assert desktop_escape("posegen", "a;b", {"TERM": "foot"}) == \
        "\x1b]777;notify;posegen;a;b\x07"
    assert desktop_escape("posegen", "hi", {"TERM": "xterm-kitty"}) == "\x1b]99;;posegen: hi\x1b\\"
    # A name cannot end the escape early.
    assert desktop_escape("posegen", "x\x07\x1b]0;y", {"WT_SESSION": "1"}) == \
        "\x1b]9;posegen: x  ]0;y\x07"
    assert desktop_escape("posegen", "hi", {"TERM": "xterm"}) is None


def test_inside_tmux_the_outer_terminals_escape_goes_through_passthrough() -> None:
    env = {"TMUX": "/tmp/t,1,0", "TERM": "tmux-256color", "TERM_PROGRAM": "tmux",
           "KITTY_WINDOW_ID": "3"}
    assert desktop_escape("posegen", "hi", env) == \
        "\x1bPtmux;\x1b\x1b]99;;posegen: hi\x1b\x1b\\\x1b\\"
    env = {"TMUX": "/tmp/t,1,0", "TERM_PROGRAM": "tmux", "LC_TERMINAL": "iTerm2"}
    assert desktop_escape("posegen", "hi", env) == "\x1bPtmux;\x1b\x1b]9;posegen: hi\x07\x1b\\"


# -- the watcher -----------------------------------------------------------------------

def brief(i: int, state: str) -> SessionBrief:
    return SessionBrief(i, "dance", state)


def test_the_watcher_reports_changes_into_an_end_once() -> None:
    w = EndWatcher()
    assert w.update({1: brief(1, "running"), 2: brief(2, "done")}) == []  # the first look
    assert w.update({1: brief(1, "running"), 2: brief(2, "done")}) == []
    assert w.update({1: brief(1, "stopped"), 2: brief(2, "stopped")}) == [brief(1, "stopped")]
    assert w.update({1: brief(1, "stopped")}) == []
    assert w.update({1: brief(1, "running"), 3: brief(3, "done")}) == []  # 3: never seen run
    assert w.update({1: brief(1, "failed")}) == [brief(1, "failed")]


def test_the_session_view_shows_its_on_done_command(tmp_path: Path) -> None:
    from posegen_tui.screens.session import SessionScreen
    from posegen_tui.widgets.session_header import SessionHeader

    home = tmp_path / "home"
    with Store(db_path(home)) as store:
        pid = store.create_project("dance", image="ref.png", pose="pose.mp4", hand="hand.mp4",
                                   prompt="a woman dances", framing="half-body")
        sid = store.create_session(pid, settings={}, seed=1, steps=2, cfg=5.0,
                                   share_steps="0", share_blocks="2 4", anchor=0, budget=None,
                                   ckpt="/ckpt", device="cpu", gpus="cpu",
                                   on_done="notify-send hi")

    async def main() -> str:
        app = PosegenApp(home=home, gpu=NoGpuSource(), session=sid, blink=False, poll_s=0.05)
        async with app.run_test(size=(200, 30)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, SessionScreen)
                        and app.screen.data is not None)
            return str(app.screen.query_one(SessionHeader).render())

    assert "on done: notify-send hi" in asyncio.run(main())
