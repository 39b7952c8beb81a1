"""`posegen-tui --demo`: made once in $POSEGEN_HOME, started, shown with its banner."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_support import kill_workers
from snapshot_support import until
from textual.widgets import Static

from posegen_tui.app import PosegenApp
from posegen_tui.data import demo
from posegen_tui.data.demo import prepare_demo
from posegen_tui.data.store_access import opened
from posegen_tui.gpu.fake import NoGpuSource
from posegen_tui.screens.session import SessionScreen

pytestmark = pytest.mark.slow  # makes the demo and runs its workers


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_ckpt: Path) -> Iterator[Path]:
    root = tmp_path / "home"
    monkeypatch.setenv("POSEGEN_HOME", str(root))
    monkeypatch.setenv("POSEGEN_HEARTBEAT_S", "0.5")
    # `posegen ckpt make-tiny` is the engine's (and tested there): reuse its output.
    shutil.copytree(tiny_ckpt, root / "demo" / "ckpt")
    yield root
    kill_workers(root)


def test_demo_is_made_once_started_and_labelled(home: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    async def drive() -> int:
        app = PosegenApp(home=home, gpu=NoGpuSource(), demo=True, blink=False, poll_s=0.25)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, SessionScreen)
                        and app.screen.data is not None, timeout=120)
            screen = app.screen
            banner = screen.query_one("#demo-banner", Static)
            assert banner.display and "RANDOM weights" in str(banner.render())
            s = screen.data.session
            assert (s["settings"]["height"], s["settings"]["width"], s["steps"]) == (128, 64, 10)
            assert (s["share_steps"], s["share_blocks"]) == ("0 2", "2 4")
            assert len(screen.data.chunks) == 5
            await until(pilot, lambda: any(w["alive"] for w in app.screen.data.workers),
                        timeout=90)
            await pilot.press("x")  # stop: the worker leaves at its next step boundary
            await pilot.pause(0.5)
            return screen.session_id

    sid = asyncio.run(drive())
    calls: list[str] = []
    monkeypatch.setattr(demo, "start", lambda h, s: calls.append(f"start {s}"))
    monkeypatch.setattr(demo, "resume", lambda h, s: calls.append(f"resume {s}"))
    assert prepare_demo(home) == sid  # a second --demo reuses everything...
    assert calls == []  # ...and does not start a second engine beside the running one
    kill_workers(home)
    with opened(home) as store:
        store.set_session_state(sid, "paused")
    assert prepare_demo(home) == sid
    assert calls == [f"resume {sid}"]  # a paused (or stopped, crashed) demo continues
    with opened(home) as store:
        assert len(store.list_projects()) == 1 and len(store.list_sessions()) == 1
