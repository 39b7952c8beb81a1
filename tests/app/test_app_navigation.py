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
