"""The app drives the real tiny engine: start, watch every chunk finish, pause, resume,
quit and re-attach, retry a chunk with a new seed. Worker processes are real."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_support import kill_workers, make_session
from snapshot_support import until
from textual.pilot import Pilot

from posegen_tui.app import PosegenApp
from posegen_tui.gpu.fake import NoGpuSource
from posegen_tui.screens.retry import RetryScreen
from posegen_tui.screens.session import SessionScreen
from posegen_tui.widgets.chunk_timeline import ChunkTimeline
from sessions.store import pid_alive

pytestmark = pytest.mark.slow  # real worker processes through every chunk


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "home"
    monkeypatch.setenv("POSEGEN_HOME", str(root))
    monkeypatch.setenv("POSEGEN_HEARTBEAT_S", "0.5")
    monkeypatch.setenv("POSEGEN_TUI_GPU", "none")
    yield root
    kill_workers(root)


def session_screen(pilot: Pilot) -> SessionScreen:
    screen = pilot.app.screen
    assert isinstance(screen, SessionScreen), screen
    return screen


def timeline_rows(pilot: Pilot) -> str:
    """The base and cond rows of the timeline as plain text."""
    lines = session_screen(pilot).query_one(ChunkTimeline).render().plain.splitlines()
    return "\n".join(lines[1:3])


def statuses(pilot: Pilot) -> dict[int, str]:
    data = session_screen(pilot).data
    return {} if data is None else {c.idx: c.status for c in data.chunks}


def state(pilot: Pilot) -> str | None:
    data = session_screen(pilot).data
    return None if data is None else data.state


def app_for(home: Path, **kw) -> PosegenApp:
    return PosegenApp(home=home, gpu=NoGpuSource(), blink=False, poll_s=0.25, **kw)


def test_run_pause_quit_reattach_resume_retry(home: Path, tiny_ckpt: Path,
                                              sample_dir: Path) -> None:
    sid = make_session(home, tiny_ckpt, sample_dir)
    asyncio.run(drive(home, sid))


async def drive(home: Path, sid: int) -> None:

    # Start, let a chunk run, pause it, then quit: the engine is not the app's.
    async with app_for(home, session=sid, auto_open=False).run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(pilot.app.screen, SessionScreen)
                    and state(pilot) == "created")
        assert len(statuses(pilot)) == 5  # the plan shows before any worker ran
        await pilot.press("s")
        await until(pilot, lambda: "running" in statuses(pilot).values(), timeout=150)
        await pilot.press("p")
        await until(pilot, lambda: state(pilot) == "paused", timeout=90)
        assert "running" not in statuses(pilot).values()
        await pilot.press("r")
        await until(pilot, lambda: any(w["alive"] for w in session_screen(pilot).data.workers),
                    timeout=60)
        pids = [w["pid"] for w in session_screen(pilot).data.workers if w["alive"]]
        await pilot.press("q")
    assert all(pid_alive(p) for p in pids), "quitting the app must not stop the engine"

    # Re-attach: a fresh app opens the running session by itself and sees it finish.
    async with app_for(home).run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(pilot.app.screen, SessionScreen), timeout=30)
        assert session_screen(pilot).session_id == sid
        await until(pilot, lambda: state(pilot) == "done", timeout=240)
        assert set(statuses(pilot).values()) == {"done"}
        rows = timeline_rows(pilot)
        assert rows.count("[") == 5 and not set(rows) & set(">-.!~"), rows

        # Retry the last base chunk with seed 7: it reruns, the cond chunk after it is stale.
        await pilot.press("end", "t")
        await until(pilot, lambda: isinstance(pilot.app.screen, RetryScreen))
        await pilot.press("7", "enter")
        await until(pilot, lambda: statuses(pilot).get(4) in ("ready", "pending")
                    and statuses(pilot).get(3) == "stale", timeout=60)
        assert session_screen(pilot).data.chunk(4).seed == 7
        assert "~" in timeline_rows(pilot)
        await pilot.press("r")
        await until(pilot, lambda: state(pilot) == "done"
                    and set(statuses(pilot).values()) == {"done"}, timeout=240)
