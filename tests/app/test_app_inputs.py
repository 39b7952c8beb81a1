"""The new-project form's input helpers run the real engine CLI: `posegen prepare` turns a
Sapiens folder into the project's clips, `posegen prompt` drafts the prompt."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from snapshot_support import until
from test_app_forms import fill, problems
from test_inputs_prepare import FRAMES, make_sapiens_folder
from textual.widgets import Input

from posegen_tui.app import PosegenApp
from posegen_tui.data.media_info import frame_count
from posegen_tui.data.store_access import opened
from posegen_tui.gpu.fake import NoGpuSource
from posegen_tui.screens.new_project import NewProjectScreen
from posegen_tui.screens.projects import ProjectsScreen
from posegen_tui.widgets.projects_table import ProjectsTable


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "home"
    monkeypatch.setenv("POSEGEN_HOME", str(root))
    monkeypatch.delenv("QWEN25_VL_7B_INSTRUCT_PATH", raising=False)
    return root


def make_app(home: Path) -> PosegenApp:
    return PosegenApp(home=home, gpu=NoGpuSource(), auto_open=False, blink=False)


async def open_form(pilot) -> None:
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, ProjectsScreen) and app.screen.loaded)
    await pilot.press("n")
    await until(pilot, lambda: isinstance(app.screen, NewProjectScreen))


def test_project_from_a_sapiens_folder(home: Path, sample_dir: Path, tmp_path: Path) -> None:
    sapiens, driving = make_sapiens_folder(tmp_path / "sapiens-run")
    clips = home / "projects" / "walk" / "clips"

    async def drive() -> None:
        app = make_app(home)
        async with app.run_test(size=(80, 24)) as pilot:
            await open_form(pilot)
            fill(pilot, name="walk", image=str(sample_dir / "reference.png"),
                 prompt="a woman walks along a street")
            await pilot.press("enter")  # neither clips nor a Sapiens folder
            await until(pilot, lambda: "inputs:" in problems(pilot), timeout=30)
            assert "fill pose + hand (ready clips), or sapiens + driving" in problems(pilot)

            fill(pilot, pose=str(sample_dir / "pose.mp4"), sapiens=str(sapiens),
                 driving=str(driving))
            await pilot.press("enter")  # both
            await until(pilot, lambda: "not both" in problems(pilot), timeout=30)
            assert not clips.exists()

            fill(pilot, pose="")
            await pilot.press("enter")  # runs `posegen prepare` in a subprocess
            await until(pilot, lambda: isinstance(app.screen, ProjectsScreen), timeout=60)
            await until(pilot, lambda: app.screen.query_one(ProjectsTable).row_count == 1)

    asyncio.run(drive())
    with opened(home) as store:
        project = store.get_project("walk")
    assert project["pose"] == str(clips / "pose.mp4")
    assert project["hand"] == str(clips / "hand.mp4")
    assert project["driving"] == str(driving.resolve())
    for key in ("pose", "hand"):
        assert Path(project[key]).is_file()
        assert frame_count(project[key]) == FRAMES


def test_prepare_error_is_shown_in_the_form(home: Path, sample_dir: Path,
                                            tmp_path: Path) -> None:
    empty = tmp_path / "not-sapiens"
    empty.mkdir()

    async def drive() -> None:
        app = make_app(home)
        async with app.run_test(size=(80, 24)) as pilot:
            await open_form(pilot)
            fill(pilot, name="walk", image=str(sample_dir / "reference.png"),
                 prompt="a man walks", sapiens=str(empty),
                 driving=str(sample_dir / "pose.mp4"))
            await pilot.press("enter")
            await until(pilot, lambda: "prepare:" in problems(pilot), timeout=30)
            assert "pose.pkl" in problems(pilot)
            assert isinstance(app.screen, NewProjectScreen)

    asyncio.run(drive())


def test_describe_image_without_a_model_explains(home: Path, sample_dir: Path) -> None:
    async def drive() -> None:
        app = make_app(home)
        async with app.run_test(size=(80, 24)) as pilot:
            await open_form(pilot)
            fill(pilot, image=str(sample_dir / "reference.png"), prompt="my own words")
            await pilot.press("ctrl+g")  # runs `posegen prompt IMAGE` in a subprocess
            await until(pilot, lambda: "--model" in problems(pilot), timeout=30)
            assert "describe image: no Qwen2.5-VL-7B-Instruct model folder" in problems(pilot)
            assert app.screen.query_one("#field-prompt", Input).value == "my own words"

    asyncio.run(drive())
