"""`posegen prepare`: Sapiens outputs + driving video -> pose and hand clips and previews.

Everything is checked before anything is written, and every clip is streamed frame by
frame at the driving video's size and fps (the release wrote hand clips at a fixed 30).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from engine.inputs.errors import InputError
from engine.inputs.pose_render import DEFAULT_STYLE, PoseStyle, blend, render_pose
from engine.inputs.sapiens import (
    NORMAL_FILE,
    POSE_FILE,
    SEG_FILE,
    HandArrays,
    PersonPose,
    hand_frame,
    load_pose_pkl,
    open_hand_arrays,
)
from engine.inputs.video_probe import VideoInfo, iter_frames, probe_video
from engine.media import write_mp4

PathLike = str | os.PathLike[str]
T = TypeVar("T")

POSE_OUT, HAND_OUT = "pose.mp4", "hand.mp4"
POSE_VIZ_OUT, HAND_VIZ_OUT = "pose_viz.mp4", "hand_viz.mp4"
# Preview blends, as the release: skeleton 0.6 over the frame, hand normals 0.5.
POSE_VIZ_WEIGHT = 0.6
HAND_VIZ_WEIGHT = 0.5


@dataclass(frozen=True)
class SapiensInputs:
    driving: VideoInfo
    poses: list[PersonPose | None]
    hands: HandArrays
    folder: Path


@dataclass(frozen=True)
class PreparedInputs:
    pose: Path
    hand: Path
    pose_viz: Path
    hand_viz: Path
    frames: int
    fps: float


def load_sapiens_inputs(sapiens_dir: PathLike, driving: PathLike) -> SapiensInputs:
    """Read and cross-check ``pose.pkl``, ``normal.npy``, ``seg.npy`` against the driving video."""
    folder = Path(sapiens_dir)
    if not folder.is_dir():
        raise InputError(f"{folder}: Sapiens folder not found; it must hold {POSE_FILE}, "
                         f"{NORMAL_FILE} and {SEG_FILE} (see docs/inputs.md)")
    missing = [folder / name for name in (POSE_FILE, NORMAL_FILE, SEG_FILE)
               if not (folder / name).is_file()]
    if missing:
        raise InputError([f"{path}: not found; run Sapiens on the driving video to make it "
                          "(see docs/inputs.md)" for path in missing])
    problems: list[str] = []
    info = _collect(problems, lambda: probe_video(driving, "driving video"))
    poses = _collect(problems, lambda: load_pose_pkl(folder / POSE_FILE))
    hands = _collect(problems, lambda: open_hand_arrays(folder / NORMAL_FILE, folder / SEG_FILE))
    if info is not None:
        if poses is not None and len(poses) != info.frames:
            problems.append(
                f"{folder / POSE_FILE}: {len(poses)} frames but the driving video {info.path} "
                f"has {info.frames}; run Sapiens pose estimation on this driving video")
        if hands is not None:
            problems.extend(_hand_mismatch(folder, hands, info))
    if problems:
        raise InputError(problems)
    assert info is not None and poses is not None and hands is not None
    return SapiensInputs(info, poses, hands, folder)


def _collect(problems: list[str], load: Callable[[], T]) -> T | None:
    """Run ``load``; on an input error note its problems and go on (all are reported)."""
    try:
        return load()
    except InputError as exc:
        problems.extend(exc.problems)
        return None


def _hand_mismatch(folder: Path, hands: HandArrays, info: VideoInfo) -> list[str]:
    problems = []
    if hands.frames != info.frames:
        problems.append(
            f"{folder / NORMAL_FILE}: {hands.frames} frames but the driving video {info.path} "
            f"has {info.frames}; run the Sapiens normal and segmentation models on this video")
    if hands.size != info.size:
        problems.append(
            f"{folder / NORMAL_FILE}: frames are {hands.size[0]}x{hands.size[1]} (HxW) but "
            f"the driving video {info.path} is {info.height}x{info.width}; resize Sapiens' "
            "outputs back to the video's frame size")
    return problems


def prepare_inputs(sapiens_dir: PathLike, driving: PathLike, out_dir: PathLike,
                   style: PoseStyle = DEFAULT_STYLE,
                   on_written: Callable[[Path], None] | None = None) -> PreparedInputs:
    """Write pose.mp4, hand.mp4, pose_viz.mp4 and hand_viz.mp4 into ``out_dir``."""
    out = Path(out_dir)
    if out.resolve() == Path(sapiens_dir).resolve():
        raise InputError(f"{out}: --out must differ from --sapiens: Sapiens' own previews "
                         f"there (pose.mp4) would be overwritten; pass another folder")
    src = load_sapiens_inputs(sapiens_dir, driving)
    info = src.driving
    paths = PreparedInputs(out / POSE_OUT, out / HAND_OUT, out / POSE_VIZ_OUT,
                           out / HAND_VIZ_OUT, info.frames, info.fps)

    def poses() -> Iterator[np.ndarray]:
        for person in src.poses:
            yield render_pose(None if person is None else person.keypoints,
                              None if person is None else person.scores,
                              info.height, info.width, style)

    def hands() -> Iterator[np.ndarray]:
        for i in range(src.hands.frames):
            yield hand_frame(src.hands.normal[i], src.hands.seg[i])

    jobs: list[tuple[Path, Callable[[], Iterable[np.ndarray]]]] = [
        (paths.pose, poses),
        (paths.pose_viz, lambda: _overlay(poses(), info, POSE_VIZ_WEIGHT)),
        (paths.hand, hands),
        (paths.hand_viz, lambda: _overlay(hands(), info, HAND_VIZ_WEIGHT)),
    ]
    for path, frames in jobs:
        write_mp4(path, frames(), info.fps)
        if on_written is not None:
            on_written(path)
    return paths


def _overlay(overlays: Iterable[np.ndarray], info: VideoInfo, weight: float
             ) -> Iterator[np.ndarray]:
    count = 0
    for over, frame in zip(overlays, iter_frames(info.path), strict=False):
        count += 1
        yield blend(over, frame, weight)
    if count != info.frames:
        raise InputError(f"{info.path}: decoded {count} frames this time but {info.frames} "
                         "when checked; the file changed or is damaged, re-encode it")
