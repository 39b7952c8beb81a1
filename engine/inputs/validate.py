"""`posegen check`: are the job's inputs usable together, before any model is loaded?

Problems (the job would fail or be wrong) are collected and raised together as one
InputError; things that work but are probably unintended come back as warnings.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from engine.chunk_plan import ChunkPlanError, ChunkSpec, count_chunks, covered_length
from engine.inputs.errors import InputError, InputWarning
from engine.inputs.sapiens import SEG_FILE, load_pose_pkl, open_hand_arrays
from engine.inputs.video_probe import probe_video
from engine.media import MediaError, read_image

PathLike = str | os.PathLike[str]
T = TypeVar("T")

# Crop shares above this get a warning: the person may lose a shoulder or the feet.
CROP_WARN_FRACTION = 0.10
# Reference images upscaled more than this lose detail.
UPSCALE_WARN_FACTOR = 1.5


@dataclass(frozen=True)
class _Clip:
    """What validation needs of a pose or hand source."""

    path: Path
    frames: int
    size: tuple[int, int] | None  # (height, width); None for keypoints (no size of their own)
    fps: float | None


def validate_inputs(image: PathLike, pose: PathLike, hand: PathLike,
                    driving: PathLike | None = None, frames: int = 81, height: int = 1280,
                    width: int = 720, pad: bool = True, head: int = 21, tail: int = 20
                    ) -> list[InputWarning]:
    """Check a job's inputs; raise InputError listing every problem, else return warnings.

    ``pose`` is a pose video or a Sapiens ``pose.pkl``; ``hand`` is a hand video or a
    Sapiens ``normal.npy`` (with ``seg.npy`` beside it). ``frames``, ``head``, ``tail``
    and ``pad`` are the chunk settings of the job.
    """
    problems: list[str] = []
    warnings: list[InputWarning] = []
    ref = _collect(problems, lambda: _read_reference(Path(image)))
    if ref is not None:
        warnings.extend(_reference_warnings(Path(image), ref, height, width))
    pose_clip = _collect(problems, lambda: _pose_clip(Path(pose)))
    hand_clip = _collect(problems, lambda: _hand_clip(Path(hand)))
    drive = None
    if driving is not None:
        info = _collect(problems, lambda: probe_video(driving, "driving video"))
        drive = None if info is None else _Clip(info.path, info.frames, info.size, info.fps)

    clips = [c for c in (drive, pose_clip, hand_clip) if c is not None]
    if clips:
        master = clips[0]  # the driving video when given, else the pose clip
        frame_problems = [p for c in clips[1:] for p in _frame_mismatch(c, master)]
        problems.extend(frame_problems)
        problems.extend(p for c in clips[1:] for p in _size_mismatch(c, clips))
        sized = next((c for c in clips if c.size is not None), None)
        if sized is not None and sized.size is not None:
            warnings.extend(_crop_warnings(sized.path, sized.size, height, width,
                                           "driving frames"))
        if not frame_problems:
            _check_length(master, ChunkSpec(frames, head, tail), pad, problems, warnings)
    warnings.extend(_fps_warnings([c for c in (drive, pose_clip, hand_clip) if c]))
    if problems:
        raise InputError(problems)
    return warnings


def _collect(problems: list[str], load: Callable[[], T]) -> T | None:
    try:
        return load()
    except (InputError, MediaError) as exc:
        problems.extend(exc.problems if isinstance(exc, InputError) else [str(exc)])
        return None


def _read_reference(path: Path) -> tuple[int, int]:
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(f"{path}: the reference image file is empty; save it again as PNG "
                         "or JPEG")
    img = read_image(path)
    return int(img.shape[0]), int(img.shape[1])


def _pose_clip(path: Path) -> _Clip:
    if path.suffix.lower() == ".pkl":
        return _Clip(path, len(load_pose_pkl(path)), None, None)
    info = probe_video(path, "pose video")
    return _Clip(path, info.frames, info.size, info.fps)


def _hand_clip(path: Path) -> _Clip:
    if path.suffix.lower() == ".npy":
        arrays = open_hand_arrays(path, path.with_name(SEG_FILE))
        return _Clip(path, arrays.frames, arrays.size, None)
    info = probe_video(path, "hand video")
    return _Clip(path, info.frames, info.size, info.fps)


def _frame_mismatch(clip: _Clip, master: _Clip) -> list[str]:
    if clip.frames == master.frames:
        return []
    return [f"{clip.path}: {clip.frames} frames but {master.path} has {master.frames}; make "
            "both from the same driving video (posegen prepare writes matching clips)"]


def _size_mismatch(clip: _Clip, clips: list[_Clip]) -> list[str]:
    """Compare with the first clip that has a size (keypoints have none)."""
    ref = next((c for c in clips if c.size is not None), None)
    if ref is None or ref is clip or clip.size is None or clip.size == ref.size:
        return []
    assert ref.size is not None
    return [f"{clip.path}: frames are {clip.size[0]}x{clip.size[1]} (HxW) but {ref.path} is "
            f"{ref.size[0]}x{ref.size[1]}; render both at the driving video's size "
            "(posegen prepare does)"]


def _check_length(master: _Clip, spec: ChunkSpec, pad: bool, problems: list[str],
                  warnings: list[InputWarning]) -> None:
    try:
        spec.validate()
    except ChunkPlanError as exc:
        problems.append(str(exc))
        return
    if master.frames < spec.frames:
        if not pad:
            problems.append(f"{master.path}: driving video shorter than one chunk of N frames: "
                            f"{master.frames} frames, a chunk needs N={spec.frames}; turn "
                            "padding on or use a longer video")
            return
        warnings.append(InputWarning(master.path, (
            f"note: {master.path} has {master.frames} frames, fewer than one chunk "
            f"({spec.frames}): its conditions are mirror-padded to {spec.frames} frames and "
            f"the output is cut back to {master.frames}")))
        return
    if not pad:
        covered = covered_length(count_chunks(master.frames, spec, pad=False), spec)
        if covered < master.frames:
            warnings.append(InputWarning(master.path, (
                f"note: with padding off only the first {covered} of {master.frames} frames "
                f"of {master.path} are generated; turn padding on to keep them all")))


def _reference_warnings(path: Path, size: tuple[int, int], height: int, width: int
                        ) -> list[InputWarning]:
    warnings = _crop_warnings(path, size, height, width, "reference image")
    src_h, src_w = size
    scale = max(height / src_h, width / src_w)  # the crop is resized to fill the target
    if scale > UPSCALE_WARN_FACTOR:
        warnings.append(InputWarning(path, (
            f"{path}: {src_w}x{src_h} is enlarged {scale:.1f}x to fill {width}x{height}; "
            "a larger image keeps more detail of the person")))
    return warnings


def crop_fraction(size: tuple[int, int], height: int, width: int) -> tuple[str, float]:
    """(cut dimension "width"/"height"/"", share of that dimension cut) by the centre crop."""
    src_h, src_w = size
    if src_w * height > width * src_h:
        return "width", 1.0 - (src_h * width / height) / src_w
    if src_w * height < width * src_h:
        return "height", 1.0 - (src_w * height / width) / src_h
    return "", 0.0


def _crop_warnings(path: Path, size: tuple[int, int], height: int, width: int, what: str
                   ) -> list[InputWarning]:
    side, cut = crop_fraction(size, height, width)
    if cut <= CROP_WARN_FRACTION:
        return []
    edges = "left and right" if side == "width" else "top and bottom"
    return [InputWarning(path, (
        f"{path}: the {what} is {size[1]}x{size[0]} (W x H, aspect {size[1] / size[0]:.2f}) "
        f"but the target is {width}x{height} (aspect {width / height:.2f}): the centre crop "
        f"removes {cut:.0%} of its {side} ({cut / 2:.0%} from each of the {edges}); crop it "
        f"to {width}:{height} yourself to choose what stays"))]


def _fps_warnings(clips: list[_Clip]) -> list[InputWarning]:
    rates = [(c.path, c.fps) for c in clips if c.fps]
    if len({round(fps, 2) for _, fps in rates}) <= 1:
        return []
    listed = ", ".join(f"{p.name} {fps:g}" for p, fps in rates)
    return [InputWarning(rates[0][0], (
        f"frame rates differ ({listed}); the output uses the pose video's, so timing may "
        "drift from the driving video: render pose and hand clips with posegen prepare"))]
