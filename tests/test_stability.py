"""The background-stability figure (engine/stability.py) on frames made by hand."""

from __future__ import annotations

import numpy as np
import pytest

from engine.stability import background_motion, person_mask

F, H, W = 6, 64, 48


def skeleton(x: int) -> np.ndarray:
    """Pose frames: a vertical white stick at column ``x`` on black."""
    pose = np.zeros((F, H, W, 3), np.uint8)
    pose[:, 10:54, x] = 255
    return pose


def scene(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (H, W + F, 3), dtype=np.uint8)


def test_a_still_background_scores_zero_whatever_the_person_does() -> None:
    rng = np.random.default_rng(0)
    bg = scene(rng)[:, :W]
    frames = np.repeat(bg[None], F, axis=0)
    frames[:, 10:54, 20:28] = rng.integers(0, 256, (F, 44, 8, 3), dtype=np.uint8)  # the person
    assert background_motion(frames, skeleton(24)) == 0.0


def test_a_pan_scores_its_mean_change_outside_the_person() -> None:
    rng = np.random.default_rng(1)
    wide = scene(rng)
    frames = np.stack([wide[:, t:t + W] for t in range(F)])  # one pixel per frame
    pose = skeleton(24)
    got = background_motion(frames, pose)
    # The figure from its definition, pixel by pixel with loops over the pairs.
    person = person_mask(pose)
    diffs = []
    for t in range(F - 1):
        for y in range(H):
            for x in range(W):
                if not (person[t, y, x] or person[t + 1, y, x]):
                    a, b = frames[t, y, x].astype(int), frames[t + 1, y, x].astype(int)
                    diffs.append(np.abs(b - a).mean())
    assert got == pytest.approx(np.mean(diffs), rel=1e-9)
    assert got > 40  # random texture shifted by a pixel changes a lot


def test_the_mask_grows_the_skeleton_by_the_margin() -> None:
    mask = person_mask(skeleton(24), grow=0.1)  # 0.1 * 48 = 5 pixels
    assert mask[0, 30, 24 - 5] and mask[0, 30, 24 + 5]
    assert not mask[0, 30, 24 - 7] and not mask[0, 30, 24 + 7]
    assert not mask[0, 0, 24]  # above the stick's top end (10) by more than the margin


def test_no_background_or_one_frame_gives_none_and_shapes_are_checked() -> None:
    full = np.full((F, H, W, 3), 255, np.uint8)
    assert background_motion(np.zeros((F, H, W, 3), np.uint8), full) is None
    assert background_motion(np.zeros((1, H, W, 3), np.uint8), skeleton(3)[:1]) is None
    with pytest.raises(ValueError, match="differ"):
        background_motion(np.zeros((F, H, W + 2, 3), np.uint8), skeleton(3))


def test_the_figure_is_taken_on_a_grid_of_about_180_pixels_across() -> None:
    from engine.stability import sample_stride

    assert [sample_stride(*hw) for hw in ((1280, 720), (640, 352), (64, 32), (720, 1280))] == \
        [4, 1, 1, 4]
    # a pan seen on every 2nd pixel scores like the pan seen on every pixel
    rng = np.random.default_rng(2)
    wide = np.repeat(np.repeat(scene(rng), 2, axis=0), 2, axis=1)  # 2x2 blocks
    frames = np.stack([wide[:, 2 * t:2 * t + 2 * W] for t in range(F)])
    pose = np.repeat(np.repeat(skeleton(24), 2, axis=1), 2, axis=2)
    full = background_motion(frames, pose)
    sampled = background_motion(frames[:, ::2, ::2], pose[:, ::2, ::2])
    assert sampled == pytest.approx(full, rel=0.1)
