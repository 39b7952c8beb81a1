"""Reading Sapiens outputs: ``pose.pkl``, ``normal.npy``, ``seg.npy`` (docs/inputs.md).

Every check names the file and says how to produce a correct one. The arrays are
memory-mapped: a 1080p clip of 300 frames is gigabytes, and frames are used one at a time.
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from engine.inputs.errors import InputError
from engine.inputs.skeleton import NUM_KEYPOINTS

POSE_FILE = "pose.pkl"
NORMAL_FILE = "normal.npy"
SEG_FILE = "seg.npy"
# Goliath body-part classes of Sapiens' segmentation: 5 left hand, 14 right hand.
HAND_CLASSES = (5, 14)

_DOCS = "see docs/inputs.md"
_MAX_LISTED = 3  # problems listed per file before "and N more"

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class PersonPose:
    keypoints: np.ndarray  # float32 133 x 2, pixels of the driving frame
    scores: np.ndarray  # float32 133


@dataclass(frozen=True)
class HandArrays:
    normal: np.ndarray  # uint8 F x H x W x 3 (memory-mapped)
    seg: np.ndarray  # integer F x H x W (memory-mapped)

    @property
    def frames(self) -> int:
        return self.normal.shape[0]

    @property
    def size(self) -> tuple[int, int]:
        return self.normal.shape[1], self.normal.shape[2]


class _ForbiddenClass(pickle.UnpicklingError):
    pass


class _ArraysOnly(pickle.Unpickler):
    """Unpickle lists, dicts, numbers and numpy arrays, nothing else.

    A pickle can run any code when loaded; pose files come from other tools and other
    people, so only the classes a keypoint file needs are allowed.
    """

    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("collections", "OrderedDict"),
        ("_codecs", "encode"),  # protocol 2 stores array bytes through it
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise _ForbiddenClass(f"refusing to load {module}.{name}")
        if name == "ndarray":
            return _ArrayType
        if name == "_reconstruct":
            return partial(_reconstruct, super().find_class(module, name))
        return super().find_class(module, name)


class _ArrayType:
    """Stands for ``numpy.ndarray`` inside a pose pickle.

    numpy pickles name the class only as ``_reconstruct``'s first argument; called
    directly (``ndarray(shape)``) it would allocate whatever a few bytes declare (a
    1.3 kB file asked for 22 GiB). The array's bytes come with ``__setstate__``, bounded
    by the file's own size.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise _ForbiddenClass("refusing to build numpy.ndarray directly (only numpy's own "
                              "array pickling is accepted)")


def _reconstruct(real: Any, subtype: Any, shape: Any, dtype: Any) -> Any:
    if subtype is not _ArrayType:
        raise _ForbiddenClass(f"refusing _reconstruct of {subtype!r}")
    if int(np.prod(shape)) > 1:  # numpy writes (0,): the data follows in __setstate__
        raise _ForbiddenClass(f"refusing an array header of shape {shape}")
    return real(np.ndarray, shape, dtype)


def load_pose_pkl(path: PathLike) -> list[PersonPose | None]:
    """The first person of every frame (None where no one was detected)."""
    path = Path(path)
    data = _unpickle(path)
    if not isinstance(data, (list, tuple)) or not data:
        raise InputError(f"{path}: expected a non-empty list over frames (each a list of "
                         f"persons), got {_describe(data)}; {_DOCS}")
    poses: list[PersonPose | None] = []
    problems: list[str] = []
    for index, frame in enumerate(data):
        try:
            poses.append(_first_person(frame))
        except ValueError as exc:
            problems.append(f"frame {index}: {exc}")
            poses.append(None)
    if problems:
        listed = "; ".join(problems[:_MAX_LISTED])
        more = f" (and {len(problems) - _MAX_LISTED} more frames)" if len(problems) > \
            _MAX_LISTED else ""
        raise InputError(
            f"{path}: {listed}{more}. Each frame must be a list of persons, each a dict with "
            f"'keypoints' ({NUM_KEYPOINTS} x 2) and 'keypoint_scores' ({NUM_KEYPOINTS}) from "
            f"Sapiens' COCO-WholeBody pose model; {_DOCS}")
    return poses


def _unpickle(path: Path) -> Any:
    if not path.is_file():
        raise InputError(f"{path}: pose file not found; run Sapiens pose estimation on the "
                         f"driving video to make it ({_DOCS})")
    raw = path.read_bytes()
    if not raw:
        raise InputError(f"{path}: the pose file is empty; run Sapiens pose estimation again")
    try:
        return _ArraysOnly(io.BytesIO(raw)).load()
    except _ForbiddenClass as exc:
        raise InputError(f"{path}: not a keypoint pickle ({exc}); it must hold only lists, "
                         f"dicts, numbers and numpy arrays ({_DOCS})") from exc
    except Exception as exc:  # truncated or foreign files raise many types
        raise InputError(f"{path}: cannot read the pose pickle ({type(exc).__name__}: {exc}); "
                         f"write it again with pickle.dump ({_DOCS})") from exc


def _first_person(frame: Any) -> PersonPose | None:
    if not isinstance(frame, (list, tuple)):
        raise ValueError(f"expected a list of persons, got {_describe(frame)}")
    if not frame:
        return None
    person = frame[0]
    if not isinstance(person, dict) or not {"keypoints", "keypoint_scores"} <= person.keys():
        raise ValueError(f"person 0 must be a dict with 'keypoints' and 'keypoint_scores', "
                         f"got {_describe(person)}")
    keypoints = _array(person["keypoints"], (NUM_KEYPOINTS, 2), "keypoints")
    scores = _array(person["keypoint_scores"], (NUM_KEYPOINTS,), "keypoint_scores")
    return PersonPose(keypoints, scores)


def _array(value: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"person 0 '{name}' is not numeric ({_describe(value)})") from None
    if arr.shape != shape:
        raise ValueError(f"person 0 '{name}' has shape {arr.shape}, expected {shape}")
    return arr


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    if isinstance(value, dict):
        return f"a dict with keys {sorted(map(str, value))[:5]}"
    return type(value).__name__


def open_hand_arrays(normal_path: PathLike, seg_path: PathLike) -> HandArrays:
    """Memory-map and check ``normal.npy`` (F x H x W x 3 uint8) and ``seg.npy`` (F x H x W)."""
    normal = _load_npy(Path(normal_path), "surface normals")
    seg = _load_npy(Path(seg_path), "segmentation")
    problems = []
    if normal.ndim != 4 or normal.shape[-1] != 3 or normal.dtype != np.uint8:
        problems.append(
            f"{normal_path}: expected uint8 RGB normals of shape F x H x W x 3, got "
            f"{normal.dtype} {normal.shape}; Sapiens' float normals n in [-1, 1] convert as "
            f"((n + 1) / 2 * 255).astype(np.uint8)")
    if seg.ndim != 3 or not np.issubdtype(seg.dtype, np.integer):
        problems.append(
            f"{seg_path}: expected integer class ids of shape F x H x W (the argmax of "
            f"Sapiens' Goliath segmentation), got {seg.dtype} {seg.shape}")
    if not problems and normal.shape[:3] != seg.shape:
        problems.append(
            f"{seg_path}: shape {seg.shape} (frames, height, width) does not match "
            f"{normal_path} {normal.shape[:3]}; run both Sapiens models on the same video")
    if not problems and normal.shape[0] == 0:
        problems.append(f"{normal_path}: holds no frames; run Sapiens again")
    if problems:
        raise InputError(problems)
    return HandArrays(normal, seg)


def _load_npy(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{path}: {what} file not found; run Sapiens on the driving video to "
                         f"make it ({_DOCS})")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable .npy array ({exc}); save it with np.save "
                         f"({_DOCS})") from exc


def hand_frame(normal: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Normals where ``seg`` is a hand class, black elsewhere (uint8 H x W x 3)."""
    mask = np.isin(seg, HAND_CLASSES)
    out = np.zeros(normal.shape, dtype=np.uint8)
    out[mask] = normal[mask]
    return out
