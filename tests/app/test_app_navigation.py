"""Keyboard only: command palette, help, archive and delete with confirmation."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from rich.console import Console
from snapshot_support import frozen_store, until
from textual.pilot import Pilot

from posegen_tui.app import PosegenApp
from posegen_tui.gpu.fake import FakeGpuSource
from posegen_tui.screens.confirm import ConfirmScreen
from posegen_tui.screens.help import HelpScreen
from posegen_tui.screens.projects import ProjectsScreen
from posegen_tui.screens.session import SessionScreen
from posegen_tui.widgets.projects_table import ProjectsTable


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield from frozen_store(tmp_path, monkeypatch)


def run(home: Path, script: Callable[[Pilot], Awaitable[None]], **kw: object) -> None:
    async def main() -> None:
        app = PosegenApp(home=home, gpu=FakeGpuSource(), blink=False, poll_s=0.2, **kw)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, ProjectsScreen)
                        and app.screen.loaded or isinstance(app.screen, SessionScreen))
            await script(pilot)

    asyncio.run(main())


def keys(pilot: Pilot) -> list[str]:
    return [k.value for k in pilot.app.screen.query_one(ProjectsTable).rows]


def test_reopening_shows_the_running_session(home: Path) -> None:
    async def script(pilot: Pilot) -> None:
        await until(pilot, lambda: isinstance(pilot.app.screen, SessionScreen))
        assert pilot.app.screen.session_id == 1  # the one with a live worker
        await pilot.press("escape")
        assert isinstance(pilot.app.screen, ProjectsScreen)

    run(home, script)


def test_command_palette_opens_a_session(home: Path) -> None:
    async def script(pilot: Pilot) -> None:
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        await pilot.press(*"open session 3")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, SessionScreen))
        assert pilot.app.screen.session_id == 3

    run(home, script, auto_open=False)


def test_help_lists_the_keys_of_the_screen(home: Path) -> None:
    async def script(pilot: Pilot) -> None:
        await until(pilot, lambda: isinstance(pilot.app.screen, SessionScreen)
                    and pilot.app.screen.data is not None)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen))
        console = Console(width=100, file=io.StringIO(), record=True)
        console.print(pilot.app.screen.render_help())
        text = console.export_text()
        for words in ("retry", "pause", "resume", "merge", "cache", "GPU", "budget"):
            assert words in text
        await pilot.press("escape")
        assert isinstance(pilot.app.screen, SessionScreen)

    run(home, script, session=1, auto_open=False)


def test_archive_and_delete_ask_first(home: Path) -> None:
    async def script(pilot: Pilot) -> None:
        screen = pilot.app.screen
        table = screen.query_one(ProjectsTable)
        assert "session:2" in keys(pilot)
        table.select_key("session:2")
        await pilot.press("a")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen))
        await pilot.press("n")  # no: nothing happens
        await pilot.pause(0.3)
        assert "session:2" in keys(pilot)
        await pilot.press("a", "y")
        await until(pilot, lambda: "session:2" not in keys(pilot))
        await pilot.press("A")  # show archived
        await until(pilot, lambda: "session:2" in keys(pilot))

        table.select_key("project:2")
        await pilot.press("d")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: "project:2" not in keys(pilot))
        assert "session:3" not in keys(pilot)

    run(home, script, auto_open=False)


HOSTILE = "[@click=app.quit]evil [/bold] \\[x]"


def test_markup_in_a_project_name_is_shown_not_obeyed(home: Path) -> None:
    """Issue #14, defect 8: a project name reaches the screen as text: its brackets are
    neither styles nor actions, in the palette and in the new-session form."""
    from textual.command import CommandPalette
    from textual.widgets import OptionList

    from posegen_tui.screens.new_session import NewSessionScreen
    from sessions.paths import db_path
    from sessions.store import Store

    with Store(db_path(home)) as store:
        store.create_project(HOSTILE, image="i.png", pose="p.mp4", hand="h.mp4",
                             prompt="a woman dances")

    def hits(pilot: Pilot) -> list[str]:
        if not isinstance(pilot.app.screen, CommandPalette):
            return []
        options = pilot.app.screen.query_one(OptionList).options
        return [str(o.prompt) for o in options]

    async def script(pilot: Pilot) -> None:
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(pilot.app.screen, CommandPalette))
        await pilot.press(*"evil")
        await until(pilot, lambda: any(HOSTILE in h for h in hits(pilot)))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, NewSessionScreen))
        title = pilot.app.screen.query_one(".dialog-title")
        assert HOSTILE in str(title.render())
        assert pilot.app.is_running

    run(home, script, auto_open=False)


def test_control_characters_in_names_are_refused(tmp_path: Path) -> None:
    from sessions.store import Store, StoreError

    with Store(tmp_path / "db") as store:
        with pytest.raises(StoreError, match=r"\\x1b"):
            store.create_project("a\x1b]0;pwned\x07", image="i", pose="p", hand="h",
                                 prompt="a man")
        pid = store.create_project("fine", image="i", pose="p", hand="h", prompt="a man")
        with pytest.raises(StoreError, match="session name"):
            store.create_session(pid, settings={}, seed=0, steps=1, cfg=1.0, share_steps="0 1",
                                 share_blocks="0 1", anchor=0, budget=None, ckpt="c",
                                 device="cpu", gpus="cpu", name="x\x1b[2J")


def test_shift_x_stops_now_after_a_yes(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`posegen stop --now` in the app: X, a confirmation, the same call and words."""
    from posegen_tui.data import actions

    calls: list[int] = []

    def stop_now(home_: Path, session_id: int) -> str:
        calls.append(session_id)
        return f"session {session_id}: stopped at once"

    monkeypatch.setattr(actions, "stop_now", stop_now)

    async def script(pilot: Pilot) -> None:
        await until(pilot, lambda: isinstance(pilot.app.screen, SessionScreen)
                    and pilot.app.screen.loaded)
        sid = pilot.app.screen.session_id
        await pilot.press("X")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen))
        await pilot.press("n")
        await until(pilot, lambda: isinstance(pilot.app.screen, SessionScreen))
        assert calls == []
        await pilot.press("X")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: calls == [sid])

    run(home, script)


def test_delete_of_a_running_session_says_stop_first(home: Path) -> None:
    """Issue #15: delete of a session whose worker runs asked, then failed; now it says
    what to do before asking."""
    async def script(pilot: Pilot) -> None:
        table = pilot.app.screen.query_one(ProjectsTable)
        table.select_key("session:1")  # the scenario's running session
        await pilot.press("d")
        await until(pilot, lambda: any("stop it first" in n.message
                                       for n in pilot.app._notifications))
        assert isinstance(pilot.app.screen, ProjectsScreen)
        assert "session:1" in keys(pilot)

    run(home, script, auto_open=False)
