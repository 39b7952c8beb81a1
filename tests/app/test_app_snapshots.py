"""SVG snapshots of the main screens at 80x24 and 160x48, fake GPU and no NVML.

The store is filled through its public API under a frozen clock (scenario.py);
no worker runs, `time.time` is frozen for ages and ETAs, TZ is UTC, and the
forms' cursors do not blink. Update baselines with `--snapshot-update`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from snapshot_support import frozen_store, gpu_shown, session_ready, until
from textual.pilot import Pilot

from posegen_tui.app import PosegenApp
from posegen_tui.gpu.fake import FakeGpuSource, NoGpuSource
from posegen_tui.gpu.source import GpuSource
from posegen_tui.screens.budget import BudgetScreen
from posegen_tui.screens.new_session import NewSessionScreen
from posegen_tui.screens.projects import ProjectsScreen

WIDE = (160, 48)
NARROW = (80, 24)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield from frozen_store(tmp_path, monkeypatch)


def make_app(home: Path, gpu: GpuSource | None = None, session: int | None = None
             ) -> PosegenApp:
    return PosegenApp(home=home, gpu=gpu or FakeGpuSource(), session=session,
                      auto_open=False, blink=False)


async def projects_ready(pilot: Pilot) -> None:
    # The table fills, then the cursor's row is highlighted and its details drawn.
    await until(pilot, lambda: isinstance(pilot.app.screen, ProjectsScreen)
                and pilot.app.screen.loaded and pilot.app.screen.detail_shown
                and gpu_shown(pilot))


async def session_loaded(pilot: Pilot) -> None:
    await until(pilot, lambda: session_ready(pilot))


async def select_done_chunk(pilot: Pilot) -> None:
    await session_loaded(pilot)
    await pilot.press("left", "left")  # from running chunk 6 to chunk 4 (done, has frames)
    await session_loaded(pilot)


def test_projects_80x24(snap_compare, home: Path) -> None:
    assert snap_compare(make_app(home), terminal_size=NARROW, run_before=projects_ready)


def test_projects_160x48(snap_compare, home: Path) -> None:
    assert snap_compare(make_app(home), terminal_size=WIDE, run_before=projects_ready)


def test_session_running_80x24(snap_compare, home: Path) -> None:
    assert snap_compare(make_app(home, session=1), terminal_size=NARROW,
                        run_before=session_loaded)


def test_session_160x48_fake_gpu(snap_compare, home: Path) -> None:
    assert snap_compare(make_app(home, session=1), terminal_size=WIDE,
                        run_before=select_done_chunk)


def test_session_160x48_no_nvml(snap_compare, home: Path) -> None:
    assert snap_compare(make_app(home, NoGpuSource(), session=1), terminal_size=WIDE,
                        run_before=session_loaded)


def test_session_failed_no_color_80x24(snap_compare, home: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Failed, stale, ready, pending and done chunks must read from glyphs alone."""
    monkeypatch.setenv("NO_COLOR", "1")
    assert snap_compare(make_app(home, session=3), terminal_size=NARROW,
                        run_before=session_loaded)


def test_help_80x24(snap_compare, home: Path) -> None:
    async def run_before(pilot: Pilot) -> None:
        await session_loaded(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.2)

    assert snap_compare(make_app(home, session=1), terminal_size=NARROW, run_before=run_before)


def test_gpu_160x48_fake_gpu(snap_compare, home: Path) -> None:
    async def run_before(pilot: Pilot) -> None:
        await projects_ready(pilot)
        await pilot.press("g")
        await until(pilot, lambda: gpu_shown(pilot))

    assert snap_compare(make_app(home), terminal_size=WIDE, run_before=run_before)


def test_gpu_80x24_no_nvml(snap_compare, home: Path) -> None:
    async def run_before(pilot: Pilot) -> None:
        await projects_ready(pilot)
        await pilot.press("g")
        await until(pilot, lambda: gpu_shown(pilot))

    assert snap_compare(make_app(home, NoGpuSource()), terminal_size=NARROW,
                        run_before=run_before)


def test_budget_80x24(snap_compare, home: Path) -> None:
    async def run_before(pilot: Pilot) -> None:
        await projects_ready(pilot)
        await pilot.press("b")  # the highlighted project: dance
        await until(pilot, lambda: isinstance(pilot.app.screen, BudgetScreen)
                    and pilot.app.screen.loaded)

    assert snap_compare(make_app(home), terminal_size=NARROW, run_before=run_before)


def test_new_session_form_80x24(snap_compare, home: Path) -> None:
    async def run_before(pilot: Pilot) -> None:
        await projects_ready(pilot)
        await pilot.press("N")
        await until(pilot, lambda: isinstance(pilot.app.screen, NewSessionScreen))

    assert snap_compare(make_app(home), terminal_size=NARROW, run_before=run_before)
