"""Preview sessions (issue #17): the full run's plan, cheaper, and the anchor chosen from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sessions_helpers import init_project, ok, posegen, status

from engine.chunk_plan import make_plan
from engine.preview import preview_settings, preview_side
from engine.settings import FRAMINGS, JobSettings


def test_default_preview_of_the_release_size() -> None:
    full = JobSettings()  # 1280x720, 25 steps, -s 0 2
    p = preview_settings(full)
    assert (p.height, p.width, p.steps, p.share_steps) == (640, 352, 10, (0, 1))
    # everything that shapes the plan or the look is the full run's
    for name in ("frames", "head", "tail", "seed", "cfg_scale", "shift", "share_blocks",
                 "max_block_idx", "use_mask", "anchor", "num_chunks", "pad"):
        assert getattr(p, name) == getattr(full, name), name
    assert make_plan(400, p.spec, p.num_chunks, p.anchor) == make_plan(400, full.spec,
                                                                        full.num_chunks,
                                                                        full.anchor)
    assert not p.problems()


@pytest.mark.parametrize(("share", "want"), [
    ((0, 1), (0, 1)), ((0, 2), (0, 1)), ((0, 4), (0, 2)), ((2, 10), (0, 4)), ((5, 10), (2, 4))])
def test_the_share_steps_keep_their_fraction_of_the_steps(share, want) -> None:
    assert preview_settings(JobSettings(share_steps=share)).share_steps == want


def test_every_framing_previews_with_at_least_one_shared_step() -> None:
    for steps, blocks in FRAMINGS.values():
        p = preview_settings(JobSettings(share_steps=steps, share_blocks=blocks))
        assert p.share_steps[1] - p.share_steps[0] >= 1 and not p.problems()


def test_sides_and_overrides() -> None:
    assert [preview_side(s) for s in (720, 1280, 48, 16)] == [352, 640, 16, 16]
    p = preview_settings(JobSettings(steps=30), size=(320, 192), steps=6)
    assert (p.height, p.width, p.steps) == (320, 192, 6)
    assert preview_settings(JobSettings(steps=4)).steps == 4  # never more than the full run


# -- through the CLI, on the tiny checkpoint ------------------------------------------

FULL = ["--height", "64", "--width", "32", "--frames", "17", "--head", "5", "--tail", "4",
        "-s", "0", "2", "-b", "2", "4", "--steps", "4"]


@pytest.fixture
def home(tmp_path: Path, sample_dir: Path) -> Path:
    h = tmp_path / "home"
    init_project(h, sample_dir)
    return h


def new(home: Path, *args: str) -> dict:
    return json.loads(ok(posegen(home, "session", "new", *args, "--json")))


def plan_of(settings: dict, inputs: Path):
    from engine.media import read_video
    from engine.settings import settings_from_json

    s = settings_from_json(settings)
    return make_plan(len(read_video(inputs / "pose.mp4")[0]), s.spec, s.num_chunks, s.anchor,
                     s.pad)


def test_preview_then_full_session_with_the_chosen_anchor(home: Path, tiny_ckpt: Path,
                                                          sample_dir: Path) -> None:
    out = ok(posegen(home, "session", "new", "demo", "--ckpt", str(tiny_ckpt), *FULL,
                     "--preview", "--preview-steps", "2"))
    assert "preview: 32x16 (0.25 of the full run's tokens), 2 steps of 4" in out
    assert "--from-preview 1 --anchor K" in out
    full = new(home, "--from-preview", "1", "--anchor", "2")
    assert full["kind"] == "full"
    p, f = status(home, 1), status(home, full["id"])
    # The plan a worker makes (engine/job.py: make_plan over the pose clip's frames)
    pp, fp = plan_of(p["settings"], sample_dir), plan_of(f["settings"], sample_dir)
    assert pp.num_chunks == fp.num_chunks == 5
    assert [(c.start, c.end) for c in pp.chunks] == [(c.start, c.end) for c in fp.chunks]
    assert (pp.anchor, fp.anchor, f["anchor"]) == (0, 2, 2)
    assert [c.role for c in fp.chunks] == ["base", "cond", "anchor", "cond", "base"]
    assert (p["settings"]["steps"], f["settings"]["steps"]) == (2, 4)
    assert (p["settings"]["height"], p["settings"]["width"]) == (32, 16)
    assert (f["settings"]["height"], f["settings"]["width"]) == (64, 32)
    assert (p["kind"], f["kind"], f["from_preview"]) == ("preview", "full", 1)


def test_from_preview_refuses_what_would_change_the_plan(home: Path, tiny_ckpt: Path) -> None:
    ok(posegen(home, "session", "new", "demo", "--ckpt", str(tiny_ckpt), *FULL, "--preview"))
    bad = posegen(home, "session", "new", "--from-preview", "1", "--frames", "33")
    assert bad.returncode != 0 and "--frames: with --from-preview" in bad.stderr
    odd = posegen(home, "session", "new", "--from-preview", "1", "--anchor", "1")
    assert odd.returncode != 0 and "--anchor 1" in odd.stderr
    far = posegen(home, "session", "new", "--from-preview", "1", "--anchor", "40")
    assert far.returncode != 0 and "--anchor 40" in far.stderr
    made = new(home, "demo", "--ckpt", str(tiny_ckpt), *FULL)
    not_preview = posegen(home, "session", "new", "--from-preview", str(made["id"]))
    assert not_preview.returncode != 0 and "is not a preview" in not_preview.stderr
    lone = posegen(home, "session", "new", "demo", "--preview-steps", "3")
    assert lone.returncode != 0 and "add --preview" in lone.stderr


@pytest.mark.slow  # runs a 5-chunk preview session to the merge (~1 min on 2 cores)
def test_a_preview_session_runs_small_and_few_step_and_scores_its_chunks(
        home: Path, tiny_ckpt: Path) -> None:
    from engine.media import load_frames
    from engine.workspace import Workspace

    sid = new(home, "demo", "--ckpt", str(tiny_ckpt), *FULL, "--preview",
              "--preview-steps", "2")["id"]
    ok(posegen(home, "start", str(sid)))
    ok(posegen(home, "wait", str(sid), "--timeout", "300"))
    snap = status(home, sid)
    assert snap["state"] == "done" and Path(snap["video"]).is_file()
    ws = Workspace(snap["workspace"])
    motions = []
    for c in snap["chunks"]:
        assert load_frames(ws.frames(c["index"])).shape[1:3] == (32, 16)
        done = ws.done_record(c["index"])
        assert done["steps_run"] == 2
        motions.append(done["extra"]["background_motion"])
    # Each chunk's background figure (engine/stability.py) is in its done.json.
    assert all(isinstance(m, float) and 0 <= m <= 255 for m in motions), motions
