"""`posegen prepare` end to end on a synthetic Sapiens folder, and its input errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.inputs import skeleton as sk
from engine.inputs.video_probe import iter_frames, probe_video
from engine.media import write_mp4

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FRAMES, H, W, FPS = 12, 64, 48, 24.0
NORMAL_RGB = (200, 120, 60)
# 16x16 blocks (codec friendly) of the left (5) and right (14) hand classes, and a
# background-like class elsewhere.
LEFT_BLOCK = (slice(8, 24), slice(0, 16))
RIGHT_BLOCK = (slice(40, 56), slice(32, 48))
# A standing figure (COCO-WholeBody index: x, y) inside 48 x 64.
FIGURE = {0: (24, 8), 5: (32, 16), 6: (16, 16), 7: (32, 28), 8: (10, 36), 9: (32, 40),
          10: (10, 56), 11: (28, 38), 12: (20, 38), 13: (28, 50), 14: (20, 50),
          15: (28, 62), 16: (20, 62)}


def driving_frames(frames: int = FRAMES, height: int = H, width: int = W) -> np.ndarray:
    ramp = np.linspace(40, 160, width, dtype=np.float32)[None, :, None]
    base = np.broadcast_to(ramp, (height, width, 3)).astype(np.uint8)
    return np.stack([np.roll(base, i, axis=1) for i in range(frames)])


def pose_data(frames: int = FRAMES) -> list:
    kp = np.zeros((133, 2), np.float32)
    sc = np.zeros(133, np.float32)
    for i, xy in FIGURE.items():
        kp[i], sc[i] = xy, 0.95
    person = {"keypoints": kp.tolist(), "keypoint_scores": sc.tolist()}  # as Sapiens saves
    return [[dict(person)] for _ in range(frames)]


def make_sapiens_folder(root: Path, frames: int = FRAMES, height: int = H, width: int = W,
                        fps: float = FPS) -> tuple[Path, Path]:
    """(sapiens folder, driving video) of a synthetic clip."""
    sapiens = root / "sapiens"
    sapiens.mkdir(parents=True, exist_ok=True)
    driving = root / "driving.mp4"
    write_mp4(driving, driving_frames(frames, height, width), fps)
    (sapiens / "pose.pkl").write_bytes(pickle.dumps(pose_data(frames)))
    normal = np.empty((frames, height, width, 3), np.uint8)
    normal[:] = NORMAL_RGB
    seg = np.full((frames, height, width), 1, np.int64)  # "apparel"
    seg[(slice(None), *LEFT_BLOCK)] = 5
    seg[(slice(None), *RIGHT_BLOCK)] = 14
    np.save(sapiens / "normal.npy", normal)
    np.save(sapiens / "seg.npy", seg)
    return sapiens, driving


def close(pixel: np.ndarray, rgb: tuple[int, int, int], tol: int) -> bool:
    return bool(np.all(np.abs(pixel.astype(int) - np.array(rgb)) <= tol))


def test_prepare_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sapiens, driving = make_sapiens_folder(tmp_path)
    out = tmp_path / "out"
    assert main(["prepare", "--sapiens", str(sapiens), "--driving", str(driving),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    names = ("pose.mp4", "hand.mp4", "pose_viz.mp4", "hand_viz.mp4")
    for name in names:
        info = probe_video(out / name)
        assert (info.frames, info.height, info.width) == (FRAMES, H, W), name
        assert info.fps == pytest.approx(FPS), name
        assert f"wrote {out / name}" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # no temp files left

    pose = next(iter_frames(out / "pose.mp4"))
    assert close(pose[2, 2], (0, 0, 0), 12)  # background
    assert close(pose[26, 13], sk.OPENPOSE_COLORS[2], 60)  # right upper arm, lossy video
    hand = np.stack(list(iter_frames(out / "hand.mp4")))
    assert close(hand[:, 16, 8], NORMAL_RGB, 20) and close(hand[:, 48, 40], NORMAL_RGB, 20)
    assert close(hand[:, 32, 24], (0, 0, 0), 12) and close(hand[:, 60, 4], (0, 0, 0), 12)
    viz = next(iter_frames(out / "hand_viz.mp4"))
    drive = driving_frames()[0]
    assert close(viz[16, 8], tuple((np.array(NORMAL_RGB) + drive[16, 8]) // 2), 20)
    assert close(viz[32, 24], tuple(drive[32, 24] // 2), 20)


def _run_prepare(tmp_path: Path, sapiens: Path, driving: Path,
                 capsys: pytest.CaptureFixture[str]) -> str:
    out = tmp_path / "out"
    rc = main(["prepare", "--sapiens", str(sapiens), "--driving", str(driving),
               "--out", str(out)])
    assert rc == 2
    assert not out.exists() or not any(out.iterdir())  # nothing written on error
    return capsys.readouterr().err


def test_prepare_refuses_mismatched_files(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    sapiens, driving = make_sapiens_folder(tmp_path)
    (sapiens / "pose.pkl").write_bytes(pickle.dumps(pose_data(FRAMES - 1)))
    np.save(sapiens / "normal.npy", np.zeros((FRAMES, H, W - 8, 3), np.uint8))
    np.save(sapiens / "seg.npy", np.zeros((FRAMES, H, W - 8), np.uint8))
    err = _run_prepare(tmp_path, sapiens, driving, capsys)
    assert f"{sapiens / 'pose.pkl'}: 11 frames but the driving video {driving} has 12" in err
    assert f"{sapiens / 'normal.npy'}: frames are 64x40 (HxW) but the driving video" in err


def test_prepare_refuses_bad_keypoints_and_missing_files(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sapiens, driving = make_sapiens_folder(tmp_path)
    data = pose_data()
    data[5][0]["keypoints"] = np.zeros((17, 2)).tolist()
    (sapiens / "pose.pkl").write_bytes(pickle.dumps(data))
    err = _run_prepare(tmp_path, sapiens, driving, capsys)
    assert f"{sapiens / 'pose.pkl'}: frame 5: person 0 'keypoints' has shape (17, 2)" in err

    (sapiens / "seg.npy").unlink()
    err = _run_prepare(tmp_path, sapiens, driving, capsys)
    assert f"{sapiens / 'seg.npy'}: not found; run Sapiens" in err

    err = _run_prepare(tmp_path, tmp_path / "nowhere", driving, capsys)
    assert f"{tmp_path / 'nowhere'}: Sapiens folder not found" in err


def test_prepare_refuses_bad_driving_video_and_same_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sapiens, driving = make_sapiens_folder(tmp_path)
    driving.write_bytes(b"")
    err = _run_prepare(tmp_path, sapiens, driving, capsys)
    assert f"{driving}: the driving video file is empty" in err
    rc = main(["prepare", "--sapiens", str(sapiens), "--driving", str(driving),
               "--out", str(sapiens)])
    assert rc == 2 and "--out must differ from --sapiens" in capsys.readouterr().err
