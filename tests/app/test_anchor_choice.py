"""Choosing the anchor from a preview (issue #17): cards, the stillest preselected, Enter
starts the full run, and the 80x24 snapshot."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from scenario import SETTINGS, frames_array, plan_rows
from snapshot_support import frozen_store, until
from textual.pilot import Pilot

from posegen_tui.app import PosegenApp
from posegen_tui.data import actions
from posegen_tui.gpu.fake import FakeGpuSource
from posegen_tui.screens.anchor import AnchorScreen
from posegen_tui.screens.session import SessionScreen
from sessions.paths import db_path, workspace_dir
from sessions.store import Store

MOTION = {0: 4.25, 2: 1.5, 4: 7.0}  # chunk 2's background is the stillest; 6 is not done


def make_preview(home: Path) -> int:
    store = Store(db_path(home))
    preview = {**SETTINGS, "height": 640, "width": 352, "steps": 10, "share_steps": [0, 1],
               "full": SETTINGS}
    sid = store.create_session(1, settings=preview, seed=42, steps=10, cfg=5.0,
                               share_steps="0 1", share_blocks="34 40", anchor=0,
                               budget="auto", ckpt=str(home / "ckpt"), device="cuda",
                               gpus="0", workspace="", kind="preview")
    ws = workspace_dir(sid, home)
    store.set_workspace(sid, str(ws))
    store.init_chunks(sid, plan_rows(400, 10))  # 7 chunks: anchor 0, base 2 4 6
    wid = store.register_worker(sid, pid=1, host="h", device="cuda:0")
    for idx in (0, 2, 4):
        assert store.claim_chunk(sid, wid)["idx"] == idx
        store.finish_chunk(sid, idx, seconds=10.0, seconds_per_step=1.0, peak_vram_torch=1,
                           peak_vram_nvml=1, budget="auto", worker_id=wid)
        folder = ws / "chunks" / f"{idx:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "frames.npy", frames_array(idx))
        (folder / "done.json").write_text(json.dumps(
            {"index": idx, "steps_run": 10,
             "extra": {"background_motion": MOTION.get(idx)}}))
    store.close()
    return sid


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield from frozen_store(tmp_path, monkeypatch)


def anchor_ready(pilot: Pilot) -> bool:
    screen = pilot.app.screen
    return (isinstance(screen, AnchorScreen) and screen.choice is not None
            and len(screen.query("AnchorCard")) == len(screen.choice.candidates))


async def open_choice(pilot: Pilot) -> AnchorScreen:
    await until(pilot, lambda: isinstance(pilot.app.screen, SessionScreen)
                and pilot.app.screen.loaded)
    await pilot.press("a")
    await until(pilot, lambda: anchor_ready(pilot))
    screen = pilot.app.screen
    assert isinstance(screen, AnchorScreen)
    return screen


def test_the_stillest_is_preselected_and_enter_starts_the_full_run(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sid = make_preview(home)
    started: list[tuple[int, int]] = []

    def full_from_preview(h: Path, preview_id: int, anchor: int) -> int:
        started.append((preview_id, anchor))
        return 1  # a session the scenario has: the app opens it

    monkeypatch.setattr(actions, "full_from_preview", full_from_preview)
    app = PosegenApp(home=home, gpu=FakeGpuSource(), session=sid, auto_open=False, blink=False)

    async def drive() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_choice(pilot)
            assert [c.idx for c in screen.choice.candidates] == [0, 2, 4, 6]
            assert screen.selected == 2  # the lowest background figure
            await pilot.press("right", "right", "right")
            assert screen.selected == 6  # the last card: no further
            await pilot.press("left", "left")
            assert screen.selected == 2
            await pilot.press("enter")  # the second key: the full run, anchored on chunk 2
            await until(pilot, lambda: isinstance(pilot.app.screen, SessionScreen)
                        and pilot.app.screen.session_id == 1)

    asyncio.run(drive())
    assert started == [(sid, 2)]


def test_a_full_session_has_no_anchor_choice(home: Path) -> None:
    app = PosegenApp(home=home, gpu=FakeGpuSource(), session=1, auto_open=False, blink=False)

    async def drive() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: isinstance(pilot.app.screen, SessionScreen)
                        and pilot.app.screen.loaded)
            await pilot.press("a")
            await until(pilot, lambda: any("from a preview" in str(n.message)
                                           for n in app._notifications))
            assert isinstance(pilot.app.screen, SessionScreen)

    asyncio.run(drive())


def test_anchor_choice_80x24(snap_compare, home: Path) -> None:
    sid = make_preview(home)
    app = PosegenApp(home=home, gpu=FakeGpuSource(), session=sid, auto_open=False, blink=False)

    async def ready(pilot: Pilot) -> None:
        await open_choice(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)


