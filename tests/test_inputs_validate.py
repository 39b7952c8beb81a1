"""`validate_inputs` / `posegen check`: every bad input names its file; warnings stay warnings."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_inputs_prepare import FPS, FRAMES, H, W, driving_frames, make_sapiens_folder, pose_data

from engine.cli import main
from engine.inputs.errors import InputError
from engine.inputs.prepare import prepare_inputs
from engine.inputs.validate import crop_fraction, validate_inputs
from engine.media import write_mp4

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Small chunk settings so a 12-frame clip is longer than one chunk.
CHUNK = {"frames": 9, "head": 1, "tail": 4, "height": 64, "width": 48}


def write_image(path: Path, height: int, width: int) -> Path:
    cv2.imwrite(str(path), np.full((height, width, 3), 90, np.uint8))
    return path


@pytest.fixture(scope="module")
def job_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A consistent set: reference image, driving video, Sapiens folder, prepared clips."""
    root = tmp_path_factory.mktemp("check")
    sapiens, driving = make_sapiens_folder(root)
    clips = prepare_inputs(sapiens, driving, root / "clips")
    return {"image": write_image(root / "ref.png", 128, 96), "driving": driving,
            "pose": clips.pose, "hand": clips.hand, "sapiens": sapiens, "root": root}


def check(inputs: dict[str, Path], **override: object) -> list:
    args = {k: inputs[k] for k in ("image", "pose", "hand", "driving")}
    args.update(override)
    return validate_inputs(**{**CHUNK, **args})


def problems(inputs: dict[str, Path], **override: object) -> str:
    with pytest.raises(InputError) as err:
        check(inputs, **override)
    return str(err.value)


def test_consistent_inputs_pass(job_inputs: dict[str, Path]) -> None:
    assert check(job_inputs) == []
    # Sapiens files stand in for the clips, and the driving video is optional.
    assert check(job_inputs, pose=job_inputs["sapiens"] / "pose.pkl",
                 hand=job_inputs["sapiens"] / "normal.npy") == []
    assert check(job_inputs, driving=None) == []


def test_unreadable_or_empty_files(job_inputs: dict[str, Path], tmp_path: Path) -> None:
    empty_png, text_png = tmp_path / "empty.png", tmp_path / "text.png"
    empty_png.write_bytes(b"")
    text_png.write_text("not an image")
    empty_mp4, junk_mp4 = tmp_path / "empty.mp4", tmp_path / "junk.mp4"
    empty_mp4.write_bytes(b"")
    junk_mp4.write_bytes(b"\x00junk" * 100)
    assert f"{empty_png}: the reference image file is empty" in problems(job_inputs,
                                                                         image=empty_png)
    assert f"{text_png}: not a readable image" in problems(job_inputs, image=text_png)
    assert f"{empty_mp4}: the pose video file is empty" in problems(job_inputs, pose=empty_mp4)
    assert f"{junk_mp4}: cannot open the hand video" in problems(job_inputs, hand=junk_mp4)
    missing = tmp_path / "missing.mp4"
    assert f"{missing}: driving video not found" in problems(job_inputs, driving=missing)
    # Every problem is reported at once.
    both = problems(job_inputs, image=empty_png, hand=junk_mp4)
    assert str(empty_png) in both and str(junk_mp4) in both


def test_frame_counts_and_sizes_must_match_the_driving_video(job_inputs: dict[str, Path],
                                                             tmp_path: Path) -> None:
    short = tmp_path / "short.mp4"
    write_mp4(short, driving_frames(FRAMES - 2), FPS)
    wide = tmp_path / "wide.mp4"
    write_mp4(wide, driving_frames(FRAMES, H, W + 16), FPS)
    assert (f"{short}: {FRAMES - 2} frames but {job_inputs['driving']} has {FRAMES}"
            in problems(job_inputs, pose=short))
    assert (f"{wide}: frames are {H}x{W + 16} (HxW) but {job_inputs['driving']} is {H}x{W}"
            in problems(job_inputs, hand=wide))
    # Without a driving video, pose and hand are checked against each other.
    assert f"{short}: {FRAMES - 2} frames but" in problems(job_inputs, hand=short, driving=None)
    pkl = tmp_path / "pose.pkl"
    pkl.write_bytes(pickle.dumps(pose_data(FRAMES + 1)))
    assert f"{pkl}: {FRAMES + 1} frames but" in problems(job_inputs, pose=pkl)


def test_keypoints_of_the_wrong_shape(job_inputs: dict[str, Path], tmp_path: Path) -> None:
    data = pose_data()
    data[3][0]["keypoint_scores"] = [0.5] * 17
    pkl = tmp_path / "pose.pkl"
    pkl.write_bytes(pickle.dumps(data))
    assert (f"{pkl}: frame 3: person 0 'keypoint_scores' has shape (17,), expected (133,)"
            in problems(job_inputs, pose=pkl))


def test_short_video_is_an_error_only_with_padding_off(job_inputs: dict[str, Path]) -> None:
    text = problems(job_inputs, frames=81, pad=False)
    assert f"{job_inputs['driving']}: driving video shorter than one chunk" in text
    assert "12 frames, a chunk needs N=81" in text
    notes = check(job_inputs, frames=81, head=21, tail=20)
    assert len(notes) == 1 and "note:" in str(notes[0]) and "mirror-padded to 81" in str(notes[0])
    assert notes[0].path == job_inputs["driving"]


def test_reference_aspect_far_from_target_is_a_warning(job_inputs: dict[str, Path],
                                                       tmp_path: Path) -> None:
    square = write_image(tmp_path / "square.png", 96, 96)
    warnings = check(job_inputs, image=square)
    assert len(warnings) == 1 and warnings[0].path == square
    assert isinstance(warnings[0], Warning)
    # 48:64 target from a square: keeps 75% of the width.
    assert "removes 25% of its width (12% from each of the left and right)" in str(warnings[0])
    assert crop_fraction((1280, 720), 1280, 720) == ("", 0.0)
    side, cut = crop_fraction((1000, 1000), 1280, 720)
    assert side == "width" and cut == pytest.approx(1 - 0.5625)
    side, cut = crop_fraction((1280, 360), 1280, 720)
    assert side == "height" and cut == pytest.approx(0.5)


def test_check_command(job_inputs: dict[str, Path], tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    base = ["check", "--image", str(job_inputs["image"]), "--pose", str(job_inputs["pose"]),
            "--hand", str(job_inputs["hand"]), "--driving", str(job_inputs["driving"]),
            "--frames", "9", "--head", "1", "--tail", "4", "--height", "64", "--width", "48"]
    assert main(base) == 0
    assert "ok: the inputs fit together" in capsys.readouterr().out
    square = write_image(tmp_path / "square.png", 96, 96)
    assert main([*base, "--image", str(square)]) == 0
    assert f"warning: {square}: the reference image" in capsys.readouterr().out
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert main([*base, "--hand", str(empty), "--frames", "81", "--head", "21", "--tail", "20",
                 "--no-pad"]) == 2
    out = capsys.readouterr().out
    assert f"error: {empty}: the hand video file is empty" in out
    assert "driving video shorter than one chunk" in out and "2 problem(s)" in out
