"""`l`: a session's events and worker log in full, followed live and searchable; `v`
copies the video's path; j/k move in the projects list (issue #15)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from snapshot_support import frozen_store, until
from textual.widgets import Log

from posegen_tui.app import PosegenApp
from posegen_tui.gpu.fake import FakeGpuSource
from posegen_tui.screens.log import LogScreen
from posegen_tui.screens.projects import ProjectsScreen
from posegen_tui.screens.session import SessionScreen
from posegen_tui.widgets.projects_table import ProjectsTable
from sessions.control import log_path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield from frozen_store(tmp_path, monkeypatch)


def test_log_screen_follows_and_searches(home: Path) -> None:
    async def drive() -> None:
        app = PosegenApp(home=home, gpu=FakeGpuSource(), blink=False, poll_s=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, SessionScreen)
                        and app.screen.loaded)
            await pilot.press("l")
            await until(pilot, lambda: isinstance(app.screen, LogScreen) and app.screen.loaded)
            screen = app.screen
            assert isinstance(screen, LogScreen)
            lines = screen.lines
            assert any("chunk_start" in ln for ln in lines)  # the events
            assert "--- session-0001-worker-0.log" in lines  # then the worker's log
            assert lines[-1].endswith("chunk 6 base: step 14/25")
            assert screen.follow

            # A line appended to the worker's log shows up without a key press.
            with open(log_path(1, 0, home), "a") as f:
                f.write("2025-10-09 07:06:00 chunk 6 base: step 15/25\n")
            await until(pilot, lambda: screen.lines[-1].endswith("step 15/25"))

            await pilot.press("slash", *"step 1", "enter")
            hits = [i for i, ln in enumerate(screen.lines) if "step 1" in ln.lower()]
            assert hits and screen.match == hits[0]
            assert not screen.follow  # looking back: new lines do not scroll it away
            await pilot.press("n")
            assert screen.match == hits[1 % len(hits)]
            await pilot.press("N")
            assert screen.match == hits[0]
            await pilot.press("f")
            assert screen.follow and screen.query_one(Log).auto_scroll
            await pilot.press("escape")
            assert isinstance(app.screen, SessionScreen)

    asyncio.run(drive())


def test_video_key_copies_the_path_or_says_why_not(home: Path) -> None:
    async def drive() -> None:
        app = PosegenApp(home=home, gpu=FakeGpuSource(), blink=False, poll_s=0.2)
        copied: list[str] = []
        app.copy_to_clipboard = copied.append  # type: ignore[method-assign]
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, SessionScreen)
                        and app.screen.loaded)
            screen = app.screen
            assert isinstance(screen, SessionScreen) and screen.data is not None
            assert screen.data.video_path is None  # session 1 is still running
            await pilot.press("v")
            assert copied == []
            video = Path(screen.data.session["workspace"]) / "video.mp4"
            video.write_bytes(b"\0")
            screen.poll()
            await until(pilot, lambda: screen.data is not None
                        and screen.data.video_path is not None)
            await pilot.press("v")
            assert copied == [str(video.resolve())]

    asyncio.run(drive())


def test_j_and_k_move_in_the_projects_list(home: Path) -> None:
    async def drive() -> None:
        app = PosegenApp(home=home, gpu=FakeGpuSource(), blink=False, poll_s=0.2,
                         auto_open=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, ProjectsScreen)
                        and app.screen.loaded)
            table = app.screen.query_one(ProjectsTable)
            assert table.cursor_row == 0 and table.row_count > 2
            await pilot.press("j", "j")
            assert table.cursor_row == 2
            await pilot.press("k")
            assert table.cursor_row == 1
            await pilot.press("end")
            assert table.cursor_row == table.row_count - 1
            await pilot.press("home")
            assert table.cursor_row == 0

    asyncio.run(drive())


def test_every_footer_key_fits_80_columns(home: Path) -> None:
    """Issue #15: at 80x24 the footer hid `b budget`, `esc back` and `q quit`."""
    from textual.widgets import Footer
    from textual.widgets._footer import FooterKey

    async def drive() -> None:
        app = PosegenApp(home=home, gpu=FakeGpuSource(), blink=False, poll_s=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, SessionScreen)
                        and app.screen.loaded)
            for press in ("", "escape"):  # the session screen, then the projects list
                if press:
                    await pilot.press(press)
                    await until(pilot, lambda: isinstance(app.screen, ProjectsScreen)
                                and app.screen.loaded)
                await pilot.pause()
                keys = list(app.screen.query_one(Footer).query(FooterKey))
                assert keys, app.screen
                # Cut off at the edge, or covered by another key (the palette's key is
                # docked at the right over whatever runs under it).
                cut = [k.description for k in keys if k.region.right > 80 or any(
                    k is not o and k.region.overlaps(o.region) for o in keys)]
                assert cut == [], (type(app.screen).__name__, cut)
                shown = {k.key for k in keys}
                assert "q" in shown, shown
            assert "escape" not in shown  # projects: nothing to go back to

    asyncio.run(drive())
