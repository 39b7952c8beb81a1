"""The player (`o` on a session): frame rate from an injected clock, pause, steps,
a bounded decode-ahead window, the half-cell picture at 80x24.

Time never passes by itself here: a fake clock moves when the test says, and the
test waits for what it expects to show (never sleeps a fixed time).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from snapshot_support import frozen_store, until
from textual.pilot import Pilot

from engine.media import write_mp4
from posegen_tui.app import PosegenApp
from posegen_tui.data.frame_buffer import FrameBuffer
from posegen_tui.data.frame_source import PlayTarget
from posegen_tui.data.playhead import Playhead
from posegen_tui.gpu.fake import FakeGpuSource
from posegen_tui.screens.player import PlayerScreen
from posegen_tui.screens.session import SessionScreen
from posegen_tui.widgets.halfcell import SHADES

FPS = 16
FRAMES = 81


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def synthetic_frames(n: int, h: int = 48, w: int = 64) -> np.ndarray:
    """Flat blocks (they survive H.264 nearly intact); the bottom band's grey is the
    frame's number, so a decoded frame says which it is."""
    out = np.zeros((n, h, w, 3), dtype=np.uint8)
    out[:, : h // 2, : w // 2] = (220, 40, 40)
    out[:, : h // 2, w // 2:] = (40, 200, 60)
    out[:, h // 2: 3 * h // 4] = (40, 60, 210)
    for i in range(n):
        out[i, 3 * h // 4:] = 3 * i
        out[i, : h // 2, (i % 8) * 8: (i % 8) * 8 + 8] = (250, 230, 40)  # a moving bar
    return out


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("player") / "video.mp4"
    write_mp4(path, synthetic_frames(FRAMES), FPS)
    return path


def frame_number(frame: np.ndarray) -> int:
    """The number written into the bottom band (decoded frames are half size or less)."""
    return round(float(frame[-1, :, :].mean()) / 3)


def player_app(tmp_path: Path) -> PosegenApp:
    return PosegenApp(home=tmp_path / "home", gpu=FakeGpuSource(), auto_open=False,
                      blink=False)


def shows(pilot: Pilot, frame: int, state: str = "") -> bool:
    screen = pilot.app.screen
    return (isinstance(screen, PlayerScreen) and screen.shown == frame - 1
            and screen.status.startswith(f"frame {frame}/{FRAMES}, {FPS} fps, merged video")
            and state in screen.status)


def test_frames_follow_the_clock_space_pauses_arrows_step(tmp_path: Path, video: Path) -> None:
    clock = FakeClock()

    async def drive() -> None:
        app = player_app(tmp_path)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = PlayerScreen(PlayTarget(video, "merged video"), clock=clock)
            app.push_screen(screen)
            await until(pilot, lambda: shows(pilot, 1, "playing"))
            clock.t += 0.5  # 8 frames at 16 fps
            await until(pilot, lambda: shows(pilot, 9, "playing"))
            view = screen.query_one("#player-frame")
            assert frame_number(view.frame) == 8  # type: ignore[attr-defined]
            clock.t += 1.0
            await until(pilot, lambda: shows(pilot, 25))

            await pilot.press("space")
            await until(pilot, lambda: shows(pilot, 25, "paused"))
            clock.t += 3.0  # paused: time passes, the frame stays
            for _ in range(5):
                await pilot.pause(0.05)  # a few ticks (they look at the clock)
            assert shows(pilot, 25, "paused")

            await pilot.press("right", "right")
            await until(pilot, lambda: shows(pilot, 27, "paused"))
            await pilot.press("left")
            await until(pilot, lambda: shows(pilot, 26, "paused"))
            assert frame_number(view.frame) == 25  # type: ignore[attr-defined]

            await pilot.press("space")  # plays on from where it stood, at the clock's pace
            clock.t += 0.25
            await until(pilot, lambda: shows(pilot, 30, "playing"))
            clock.t += (FRAMES - 29) / FPS  # past the end: it loops to the start
            await until(pilot, lambda: shows(pilot, 1, "playing"))

            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, PlayerScreen))
            assert screen.buffer is not None and screen.buffer._closed

    asyncio.run(drive())


def test_playhead_arithmetic() -> None:
    clock = FakeClock()
    head = Playhead(clock, 16.0, 81)
    clock.t += 0.5
    assert head.position() == 8
    head.toggle()
    clock.t += 10
    assert head.position() == 8 and not head.playing
    head.step(-9)
    assert head.position() == 80  # wraps, as playing does
    head.toggle()
    clock.t += 1 / 16
    assert head.position() == 0


class CountingSource:
    """A long video that counts its reads and never holds more than one frame."""

    frames, fps = 100_000, 25.0

    def __init__(self) -> None:
        self.reads: list[int] = []

    def read(self, i: int) -> np.ndarray:
        self.reads.append(i)
        return np.full((2, 2, 3), i % 256, dtype=np.uint8)

    def close(self) -> None:
        pass


def test_decoding_stays_a_bounded_window_ahead() -> None:
    import threading

    source = CountingSource()
    buf = FrameBuffer(lambda: source, ahead=10, behind=3)
    worker = threading.Thread(target=buf.run)
    worker.start()
    try:
        def wait_for(cond: object) -> None:
            import time
            end = time.monotonic() + 30
            while not cond():  # type: ignore[operator]
                assert time.monotonic() < end
                time.sleep(0.01)

        wait_for(lambda: buf.get(9) is not None)
        wait_for(lambda: len(source.reads) == 10)
        assert source.reads == list(range(10))  # and no further: 10 ahead of frame 0
        buf.want(5000)  # a jump: the old window goes, the new one fills
        wait_for(lambda: buf.get(5009) is not None)
        assert buf.get(0) is None and buf.held() <= 10 + 3 + 1
        buf.want(5001)
        wait_for(lambda: buf.get(5010) is not None)
        assert buf.get(5000) is not None  # kept behind, for a step back
    finally:
        buf.close()
        worker.join(timeout=30)
    assert not worker.is_alive() and buf.error == ""


def test_player_80x24_halfcell(snap_compare, tmp_path: Path, video: Path) -> None:
    async def run_before(pilot: Pilot) -> None:
        pilot.app.push_screen(PlayerScreen(PlayTarget(video, "merged video"),
                                           clock=FakeClock()))
        await until(pilot, lambda: shows(pilot, 1))

    assert snap_compare(player_app(tmp_path), terminal_size=(80, 24), run_before=run_before)


# -- from the session screen -----------------------------------------------------------

@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield from frozen_store(tmp_path, monkeypatch)


def test_o_plays_the_selected_chunk_or_says_why_not(home: Path) -> None:
    async def drive() -> None:
        app = PosegenApp(home=home, gpu=FakeGpuSource(), session=1, auto_open=False,
                         blink=False, poll_s=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, SessionScreen)
                        and app.screen.loaded)
            await pilot.press("o")  # chunk 6 runs; the session has no merged video yet
            await until(pilot, lambda: any("chunk 6 has no video yet" in n.message
                                           for n in app._notifications))
            note = next(n.message for n in app._notifications if "chunk 6" in n.message)
            assert "being generated" in note and "merged video once" in note
            assert isinstance(app.screen, SessionScreen)

            await pilot.press("left", "left")  # chunk 4: done, its frames on disk
            await pilot.press("o")
            await until(pilot, lambda: isinstance(app.screen, PlayerScreen)
                        and app.screen.shown == 0)
            # frames.npy has 9 frames; no run.json here, so PoseGen's 16 fps
            assert re.match(r"frame \d/9, 16 fps, chunk 4 · ", app.screen.status)
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, SessionScreen))

    asyncio.run(drive())


def test_no_color_draws_shades(tmp_path: Path, video: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Half-cells are colour alone; under NO_COLOR the picture is drawn in shades."""
    monkeypatch.setenv("NO_COLOR", "1")

    async def drive() -> None:
        app = player_app(tmp_path)
        async with app.run_test(size=(80, 24)) as pilot:
            app.push_screen(PlayerScreen(PlayTarget(video, "merged video"), clock=FakeClock()))
            await until(pilot, lambda: shows(pilot, 1))
            text = str(app.screen.query_one("#player-frame").render())
            assert set(text) - {"\n"} <= set(SHADES) and len(set(text)) > 4, text

    asyncio.run(drive())
