"""Projects and sessions made through the forms, with validation that explains itself."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from snapshot_support import until
from textual.pilot import Pilot
from textual.widgets import Input, Select, Static

from posegen_tui.app import PosegenApp
from posegen_tui.gpu.fake import NoGpuSource
from posegen_tui.screens.new_project import NewProjectScreen
from posegen_tui.screens.new_session import NewSessionScreen
from posegen_tui.screens.projects import ProjectsScreen
from posegen_tui.screens.session import SessionScreen
from posegen_tui.widgets.projects_table import ProjectsTable


def fill(pilot: Pilot, **values: str) -> None:
    for key, value in values.items():
        pilot.app.screen.query_one(f"#field-{key}", Input).value = value


def problems(pilot: Pilot) -> str:
    return str(pilot.app.screen.query_one("#form-errors", Static).render())


async def open_session_form(pilot: Pilot) -> None:
    """From the projects list, N on the selected project: its new-session form."""
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, ProjectsScreen) and app.screen.loaded)
    await pilot.press("N")
    await until(pilot, lambda: isinstance(app.screen, NewSessionScreen))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "home"
    monkeypatch.setenv("POSEGEN_HOME", str(root))
    monkeypatch.delenv("POSEGEN_CKPT_PATH", raising=False)
    return root


def test_new_project_and_session_through_the_forms(home: Path, tiny_ckpt: Path,
                                                   sample_dir: Path) -> None:
    async def drive() -> None:
        app = PosegenApp(home=home, gpu=NoGpuSource(), auto_open=False, blink=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, ProjectsScreen)
                        and app.screen.loaded)
            assert "No projects yet" in str(app.screen.query_one("#projects-detail").render())
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, NewProjectScreen))
            await pilot.press(*"dance")  # typed into the focused name field
            fill(pilot, image=str(sample_dir / "missing.png"), pose=str(sample_dir / "pose.mp4"),
                 hand=str(sample_dir / "hand.mp4"), prompt="a person dancing")
            app.screen.query_one("#field-framing", Select).value = "full-body"
            await pilot.press("enter")
            await until(pilot, lambda: "woman" in problems(pilot), timeout=30)
            text = problems(pilot)
            assert "missing.png not found (missing file)" in text
            assert "names no subject" in text

            fill(pilot, image=str(sample_dir / "reference.png"),
                 prompt=str(sample_dir / "prompt.txt"))  # a prompt file works too
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, ProjectsScreen), timeout=30)
            await until(pilot, lambda: app.screen.query_one(ProjectsTable).row_count == 1)

            await pilot.press("N")
            await until(pilot, lambda: isinstance(app.screen, NewSessionScreen))
            form = app.screen
            defaults = {k: form.query_one(f"#field-{k}", Input).value for k in
                        ("steps", "cfg", "seed", "height", "width", "frames", "head", "tail",
                         "anchor", "budget", "share_steps", "share_blocks", "ckpt")}
            assert defaults == {"steps": "25", "cfg": "5", "seed": "42", "height": "1280",
                                "width": "720", "frames": "81", "head": "21", "tail": "20",
                                "anchor": "0", "budget": "none", "share_steps": "0 4",
                                "share_blocks": "32 40", "ckpt": ""}  # full-body framing
            fill(pilot, frames="80", height="100", anchor="1", budget="lots")
            await pilot.press("enter")
            await until(pilot, lambda: "1 mod 4" in problems(pilot), timeout=30)
            text = problems(pilot)
            for expected in ("--height 100: must be a positive multiple of 16",
                             "--anchor 1", "-p 'lots'", "checkpoint: give the checkpoint dir"):
                assert expected in text

            fill(pilot, ckpt=str(tiny_ckpt), height="64", width="32", frames="17", head="5",
                 tail="4", steps="4", anchor="0", budget="none", share_steps="0 2",
                 share_blocks="2 4")
            await pilot.press("enter")  # runs `posegen session new` in a subprocess
            await until(pilot, lambda: isinstance(app.screen, SessionScreen), timeout=60)
            await until(pilot, lambda: app.screen.data is not None)
            data = app.screen.data
            assert data.state == "created"
            assert [c.role for c in data.chunks] == ["anchor", "cond", "base", "cond", "base"]
            assert all(c.planned and c.status == "pending" for c in data.chunks)

    asyncio.run(drive())


def test_bad_checkpoint_is_explained(home: Path, sample_dir: Path, tmp_path: Path) -> None:
    """`posegen session new`'s own one-line error reaches the form."""
    from posegen_tui.data import actions
    from posegen_tui.data.forms import FormError, session_defaults

    pid = actions.create_project(home, {
        "name": "p", "image": str(sample_dir / "reference.png"),
        "pose": str(sample_dir / "pose.mp4"), "hand": str(sample_dir / "hand.mp4"),
        "prompt": "a boy waves", "framing": "close-up"})
    empty = tmp_path / "empty-ckpt"
    empty.mkdir()
    values = session_defaults({"framing": "close-up"}) | {"ckpt": str(empty)}
    assert values["share_steps"] == "0 1" and values["share_blocks"] == "34 40"
    with pytest.raises(FormError) as err:
        actions.create_session(home, pid, values)
    assert str(empty) in str(err.value)


def walk_project(home: Path, sample_dir: Path) -> None:
    """A project in the store before the app starts (selected first in the list)."""
    from sessions.paths import db_path
    from sessions.store import Store

    with Store(db_path(home)) as store:
        store.create_project("walk", image=str(sample_dir / "reference.png"),
                             pose=str(sample_dir / "pose.mp4"), hand=str(sample_dir / "hand.mp4"),
                             prompt="a man walks")


def test_n_after_creating_a_project_makes_a_session_of_that_project(
        home: Path, sample_dir: Path) -> None:
    """Issue #15: N opened "New session" for the row selected before the new project."""
    walk_project(home, sample_dir)

    async def drive() -> None:
        app = PosegenApp(home=home, gpu=NoGpuSource(), auto_open=False, blink=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, ProjectsScreen)
                        and app.screen.loaded)
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, NewProjectScreen))
            await pilot.press(*"dance")
            fill(pilot, image=str(sample_dir / "reference.png"),
                 pose=str(sample_dir / "pose.mp4"), hand=str(sample_dir / "hand.mp4"),
                 prompt=str(sample_dir / "prompt.txt"))
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, ProjectsScreen)
                        and app.screen.query_one(ProjectsTable).current() == ("project", 2),
                        timeout=30)
            await pilot.press("N")
            await until(pilot, lambda: isinstance(app.screen, NewSessionScreen))
            assert app.screen.project["name"] == "dance"

    asyncio.run(drive())


def test_the_focused_fields_label_stands_out(home: Path, sample_dir: Path) -> None:
    """Issue #15: the focused one-line field was nearly invisible at 80x24."""
    walk_project(home, sample_dir)

    def marked(app: PosegenApp) -> list[str]:
        return [row.key for row in app.screen.query(".form-row")
                if row.query_one(".form-label").styles.text_style.bold]

    async def drive() -> None:
        app = PosegenApp(home=home, gpu=NoGpuSource(), auto_open=False, blink=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await open_session_form(pilot)
            first = marked(app)
            assert len(first) == 1
            await pilot.press("tab")
            await until(pilot, lambda: marked(app) and marked(app) != first)
            assert len(marked(app)) == 1

    asyncio.run(drive())


def test_every_problem_at_once_and_the_hint_stays_on_screen(home: Path) -> None:
    """Issue #15: one layer of errors per submit (4 submits to see all), and at 80x24
    the errors pushed the help line off the screen."""
    from sessions.paths import db_path
    from sessions.store import Store

    with Store(db_path(home)) as store:
        store.create_project("p", image="/gone/x.png", pose="/gone/p.mp4",
                             hand="/gone/h.mp4", prompt="a man walks", framing="half-body")

    async def drive() -> None:
        app = PosegenApp(home=home, gpu=NoGpuSource(), auto_open=False, blink=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await open_session_form(pilot)
            fill(pilot, frames="80", height="100", anchor="1", budget="lots", seed="x",
                 ckpt="")
            await pilot.press("enter")
            await until(pilot, lambda: "/gone/h.mp4" in problems(pilot), timeout=30)
            text = problems(pilot)
            for expected in ("seed: 'x'", "checkpoint: give", "--frames 80", "--height 100",
                             "--anchor 1", "-p 'lots'", "/gone/x.png", "/gone/p.mp4"):
                assert expected in text  # parse and meaning problems in one submit
            await pilot.pause()
            hint = app.screen.query_one(".form-hint", Static)
            errors = app.screen.query_one("#form-errors", Static)
            assert 0 <= hint.region.y < 24 and hint.region.height == 1
            assert errors.region.y + errors.region.height <= hint.region.y

    asyncio.run(drive())


@pytest.mark.parametrize("how", ["ctrl+r", "button"])
def test_the_session_form_makes_a_preview(home: Path, tiny_ckpt: Path, sample_dir: Path,
                                          how: str) -> None:
    """Issue #17: ctrl+r (or the form's button) stores the form's preview instead."""
    from sessions.paths import db_path
    from sessions.store import Store

    walk_project(home, sample_dir)

    async def drive() -> None:
        app = PosegenApp(home=home, gpu=NoGpuSource(), auto_open=False, blink=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await open_session_form(pilot)
            fill(pilot, ckpt=str(tiny_ckpt), height="64", width="32", frames="17", head="5",
                 tail="4", steps="4", share_steps="0 2", share_blocks="2 4")
            if how == "ctrl+r":
                await pilot.press("ctrl+r")
            else:
                await pilot.click("#preview")
            await until(pilot, lambda: isinstance(app.screen, SessionScreen), timeout=60)
            await until(pilot, lambda: app.screen.data is not None)
            assert "preview: a chooses the anchor" in str(
                app.screen.query_one("#session-header").render())

    asyncio.run(drive())
    with Store(db_path(home)) as store:
        s = store.get_session(1)
    assert s["kind"] == "preview"
    assert (s["settings"]["height"], s["settings"]["width"], s["settings"]["steps"]) == (
        32, 16, 4)
    assert (s["settings"]["full"]["height"], s["settings"]["full"]["width"]) == (64, 32)
