from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.media import read_image, read_video, video_info
from engine.sample_inputs import write_sample_inputs


def test_sample_inputs(tmp_path: Path) -> None:
    paths = write_sample_inputs(tmp_path / "job", frames=40, fps=12, height=64, width=32)
    assert set(paths) == {"reference", "pose", "hand", "prompt"}
    for path in paths.values():
        assert path.is_file() and path.parent == tmp_path / "job"
    assert sorted(p.name for p in (tmp_path / "job").iterdir()) == [
        "hand.mp4", "pose.mp4", "prompt.txt", "reference.png"]

    ref = read_image(paths["reference"])
    assert ref.shape == (64, 32, 3)
    assert ref.std() > 10  # a drawn scene, not a flat fill

    for key in ("pose", "hand"):
        frames, fps, height, width = video_info(paths[key])
        assert (frames, height, width) == (40, 64, 32)
        assert abs(fps - 12) < 0.01

    pose, _ = read_video(paths["pose"])
    assert len(pose) == 40
    assert all(frame.max() > 100 for frame in pose)  # a skeleton in every frame
    assert (pose < 30).mean() > 0.5  # drawn on black
    diffs = [np.abs(pose[i].astype(int) - pose[i + 1].astype(int)).mean() for i in range(39)]
    assert sum(d > 0.1 for d in diffs) >= 30  # moving, frame after frame
    assert np.abs(pose[0].astype(int) - pose[10].astype(int)).mean() > 1

    hand, _ = read_video(paths["hand"])
    assert all(frame.max() > 100 for frame in hand)
    assert (hand < 30).mean() > 0.8

    prompt = paths["prompt"].read_text()
    assert "woman" in prompt.split() and prompt.count("\n") == 1


def test_sample_inputs_deterministic(tmp_path: Path) -> None:
    a = write_sample_inputs(tmp_path / "a", frames=5, fps=10, height=48, width=40)
    b = write_sample_inputs(tmp_path / "b", frames=5, fps=10, height=48, width=40)
    assert a["reference"].read_bytes() == b["reference"].read_bytes()
    assert np.array_equal(read_video(a["pose"])[0], read_video(b["pose"])[0])
