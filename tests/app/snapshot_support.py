"""Helpers for the snapshot tests: wait until a screen shows its data, then look."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from scenario import NOW, Clock, build
from textual.pilot import Pilot

from posegen_tui.screens.session import SessionScreen
from posegen_tui.widgets.gpu_panel import GpuPanel


async def until(pilot: Pilot, ready: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll (no fixed sleeps that a busy machine could outrun), then let renders finish."""
    waited = 0.0
    while not ready():
        assert waited < timeout, "the screen never finished loading"
        await pilot.pause(0.05)
        waited += 0.05
    await pilot.pause(0.3)
    await pilot.wait_for_scheduled_animations()


def gpu_shown(pilot: Pilot) -> bool:
    app = pilot.app
    panels = list(app.screen.query(GpuPanel))
    return app.gpu_state.loaded and all(p.shown for p in panels if p.display)


def session_ready(pilot: Pilot) -> bool:
    screen = pilot.app.screen
    if not isinstance(screen, SessionScreen) or screen.data is None:
        return False
    files = screen.data.files
    return files is not None and files.idx == screen.selected and gpu_shown(pilot)


def frozen_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The scenario's store with time.time frozen at NOW and TZ=UTC (a fixture body)."""
    old_tz = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("POSEGEN_CKPT_PATH", "/models/posegen")
    clock = Clock()
    monkeypatch.setattr(time, "time", clock)
    root = tmp_path / "home"
    build(root, clock)
    clock.t = NOW
    monkeypatch.setenv("POSEGEN_HOME", str(root))
    yield root
    if old_tz is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old_tz
    time.tzset()
