"""Reading Sapiens outputs: hand masking, memory-mapping, and the errors for bad files."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from engine.inputs.errors import InputError
from engine.inputs.sapiens import hand_frame, load_pose_pkl, open_hand_arrays

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def save_npy(path: Path, arr: np.ndarray) -> Path:
    np.save(path, arr)
    return path


def person(shape: tuple[int, int] = (133, 2)) -> dict:
    return {"keypoints": np.ones(shape, np.float32).tolist(),
            "keypoint_scores": np.full(shape[0], 0.9).tolist()}


def test_hand_masking_keeps_exactly_the_hand_classes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    normal = rng.integers(1, 256, (3, 9, 7, 3), dtype=np.uint8)  # no zeros: black means cut
    seg = rng.integers(0, 28, (3, 9, 7), dtype=np.int64)
    seg[0, 0, 0], seg[1, 0, 0] = 5, 14
    arrays = open_hand_arrays(save_npy(tmp_path / "normal.npy", normal),
                              save_npy(tmp_path / "seg.npy", seg))
    assert isinstance(arrays.normal, np.memmap) and isinstance(arrays.seg, np.memmap)
    for i in range(3):
        out = hand_frame(arrays.normal[i], arrays.seg[i])
        hand = (seg[i] == 5) | (seg[i] == 14)
        assert out.dtype == np.uint8 and out.shape == normal[i].shape
        assert np.array_equal(out[hand], normal[i][hand])
        assert not out[~hand].any()
        assert hand.any() and (~hand).any()


@pytest.mark.parametrize(("normal", "seg", "blamed", "says"), [
    (np.zeros((2, 4, 4, 3), np.float32), np.zeros((2, 4, 4), np.int64), "normal.npy", "uint8"),
    (np.zeros((2, 4, 4), np.uint8), np.zeros((2, 4, 4), np.int64), "normal.npy", "F x H x W x 3"),
    (np.zeros((2, 4, 4, 3), np.uint8), np.zeros((2, 4, 4), np.float32), "seg.npy", "integer"),
    (np.zeros((2, 4, 4, 3), np.uint8), np.zeros((3, 4, 4), np.uint8), "seg.npy", "does not match"),
    (np.zeros((2, 4, 4, 3), np.uint8), np.zeros((2, 4, 5), np.uint8), "seg.npy", "does not match"),
])
def test_bad_hand_arrays_name_the_file(tmp_path: Path, normal: np.ndarray, seg: np.ndarray,
                                       blamed: str, says: str) -> None:
    with pytest.raises(InputError, match=says) as err:
        open_hand_arrays(save_npy(tmp_path / "normal.npy", normal),
                         save_npy(tmp_path / "seg.npy", seg))
    assert str(tmp_path / blamed) in str(err.value)


def test_unreadable_or_missing_npy(tmp_path: Path) -> None:
    normal = save_npy(tmp_path / "normal.npy", np.zeros((1, 2, 2, 3), np.uint8))
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(InputError, match=r"junk\.npy: not a readable \.npy"):
        open_hand_arrays(normal, tmp_path / "junk.npy")
    with pytest.raises(InputError, match=r"seg\.npy: segmentation file not found"):
        open_hand_arrays(normal, tmp_path / "seg.npy")


def test_pose_pkl_round_trip(tmp_path: Path) -> None:
    frames = [[person()], [], [person(), person()]]
    frames[0][0]["keypoints"] = np.arange(266, dtype=np.float32).reshape(133, 2)  # arrays too
    path = tmp_path / "pose.pkl"
    path.write_bytes(pickle.dumps(frames, protocol=5))
    poses = load_pose_pkl(path)
    assert len(poses) == 3 and poses[1] is None
    assert poses[0].keypoints.shape == (133, 2) and poses[0].keypoints[1, 0] == 2
    assert poses[2].scores.shape == (133,)


@pytest.mark.parametrize(("data", "says"), [
    ([[person((17, 2))]], r"frame 0: person 0 'keypoints' has shape \(17, 2\), expected "
                          r"\(133, 2\)"),
    ([[person()], [{"keypoints": [[0, 0]] * 133}]], "frame 1: person 0 must be a dict with"),
    ([[person()], [{"keypoints": np.zeros((133, 2)), "keypoint_scores": np.zeros(17)}]],
     r"frame 1: person 0 'keypoint_scores' has shape \(17,\)"),
    ({"frames": 1}, "expected a non-empty list over frames"),
    ([], "expected a non-empty list over frames"),
    (["oops"], "frame 0: expected a list of persons"),
])
def test_bad_pose_pkl_names_the_file_and_frame(tmp_path: Path, data: object, says: str) -> None:
    path = tmp_path / "pose.pkl"
    path.write_bytes(pickle.dumps(data))
    with pytest.raises(InputError, match=says) as err:
        load_pose_pkl(path)
    assert str(path) in str(err.value)


class _Sneaky:
    def __reduce__(self) -> tuple:
        return (os.system, ("touch HACKED",))


def test_pose_pkl_never_runs_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "pose.pkl"
    path.write_bytes(pickle.dumps([[_Sneaky()]]))
    with pytest.raises(InputError, match=r"pose\.pkl: not a keypoint pickle \(refusing to load"):
        load_pose_pkl(path)
    assert not (tmp_path / "HACKED").exists()
    (tmp_path / "empty.pkl").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.pkl: the pose file is empty"):
        load_pose_pkl(tmp_path / "empty.pkl")
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps([[person()]])[:50])
    with pytest.raises(InputError, match=r"cut\.pkl: cannot read the pose pickle"):
        load_pose_pkl(tmp_path / "cut.pkl")


class _Huge:
    """Pickles as ``numpy.ndarray((6e9,), float32)``: 22 GiB declared in a few bytes."""

    def __reduce__(self) -> tuple:
        return (np.ndarray, ((6_000_000_000,), np.dtype(np.float32)))


class _HugeHeader:
    """Pickles as numpy's own ``_reconstruct`` with a huge shape instead of (0,)."""

    def __reduce__(self) -> tuple:
        return (np.ndarray.__reduce__(np.zeros(1))[0], (np.ndarray, (6_000_000_000,), b"b"))


@pytest.mark.parametrize("bomb", [_Huge(), _HugeHeader()])
def test_a_tiny_pose_pkl_cannot_allocate_what_it_declares(tmp_path: Path, bomb: object) -> None:
    """Issue #14, defect 4: a 1.3 kB pose.pkl declared a 22 GiB array and got it. Arrays
    come only through numpy's own pickling, whose bytes are in the file."""
    path = tmp_path / "pose.pkl"
    path.write_bytes(pickle.dumps([[{"keypoints": bomb, "keypoint_scores": bomb}]]))
    assert path.stat().st_size < 2000
    with pytest.raises(InputError, match=r"pose\.pkl: not a keypoint pickle") as err:
        load_pose_pkl(path)
    assert "ndarray" in str(err.value) or "array header" in str(err.value)
    for protocol in (2, 5):  # numpy's own array pickles still load, at both protocols
        ok = tmp_path / f"ok{protocol}.pkl"
        ok.write_bytes(pickle.dumps([[person()]], protocol=protocol))
        assert load_pose_pkl(ok)[0].keypoints.shape == (133, 2)
