"""How still a chunk's background is: the figure a user picks the anchor chunk by.

The release's README asks for another anchor when the first one has camera movement or
an unstable background, since every base chunk copies the anchor's background. The
figure: the mean absolute change between consecutive frames, in uint8 levels (0-255,
averaged over the three channels), over the pixels outside the person, where the
person is the chunk's pose skeleton grown by a margin (the skeleton is thin; the body
and clothes around it move with it). A still camera over a still scene gives about 0;
a pan, a zoom or a flickering background gives more. It does not see a background
that is wrong but steady.

Torch-free (numpy and OpenCV): the worker computes it when a chunk is written, on every
n-th pixel (`sample_stride`) of the frames and of the pose frames resized to match.
"""

from __future__ import annotations

import cv2
import numpy as np

POSE_ON = 24  # a pose pixel brighter than this (0-255, any channel) is skeleton
GROW = 0.08  # the skeleton grown by this fraction of the frame's shorter side
# The figure is an average over many pixels: a grid of every n-th pixel, n chosen so the
# shorter side keeps about this many, gives it in ~0.2 s instead of ~11 s at 1280x720.
SAMPLED_SIDE = 180


def sample_stride(height: int, width: int) -> int:
    """Every how many pixels a frame is sampled for the figure."""
    return max(1, min(height, width) // SAMPLED_SIDE)


def person_mask(pose: np.ndarray, grow: float = GROW) -> np.ndarray:
    """(F, H, W) bool: where the person may be, from pose frames (F, H, W, 3) uint8."""
    if pose.ndim != 4 or pose.shape[-1] != 3:
        raise ValueError(f"pose frames: expected F x H x W x 3, got shape {pose.shape}")
    skeleton = (pose.max(axis=-1) > POSE_ON).astype(np.uint8)
    radius = max(1, round(grow * min(pose.shape[1:3])))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return np.stack([cv2.dilate(f, kernel) for f in skeleton]).astype(bool)


def background_motion(frames: np.ndarray, pose: np.ndarray) -> float | None:
    """The chunk's background change per frame (see the module's text); None where no
    pixel is background in any pair of frames, or the chunk has one frame."""
    if frames.shape[:3] != pose.shape[:3]:
        raise ValueError(f"frames {frames.shape[:3]} and pose {pose.shape[:3]} differ in "
                         "frames or size")
    person = person_mask(pose)
    total, count = 0.0, 0
    for t in range(len(frames) - 1):
        # Outside the person in both frames: a moving arm uncovers background, and that
        # change is the person's, not the camera's.
        background = ~(person[t] | person[t + 1])
        n = int(background.sum())
        if n == 0:
            continue
        change = np.abs(frames[t + 1].astype(np.int16) - frames[t].astype(np.int16))
        total += float(change.mean(axis=-1)[background].sum())
        count += n
    return total / count if count else None
