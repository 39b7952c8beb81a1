"""OpenPose-style rendering of COCO-WholeBody keypoints, checked on pixel values."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest

from engine.inputs import skeleton as sk
from engine.inputs.pose_render import PoseStyle, render_pose

pytestmark = pytest.mark.usefixtures("one_torch_thread")

H, W = 240, 220
BLACK = (0, 0, 0)

# COCO-WholeBody body points (x, y); the person's right is the image's left.
BODY = {
    0: (110, 30),  # nose
    5: (150, 60), 6: (70, 60),  # left / right shoulder
    7: (150, 110), 8: (70, 110),  # elbows
    9: (150, 160), 10: (70, 160),  # wrists
    11: (130, 150), 12: (90, 150),  # hips
    13: (130, 190), 14: (90, 190),  # knees
    15: (130, 225), 16: (90, 225),  # ankles
    17: (160, 225),  # left big toe
}
LEFT_HAND_POINTS = {0: (180, 140), 1: (200, 140), 2: (200, 100)}  # wrist, thumb 1, thumb 2


def person(**scores: float) -> tuple[np.ndarray, np.ndarray]:
    """The figure above, every listed point at score 0.9 unless overridden by COCO index."""
    kp = np.zeros((133, 2), dtype=np.float32)
    sc = np.zeros(133, dtype=np.float32)
    for i, xy in BODY.items():
        kp[i], sc[i] = xy, 0.9
    for j, xy in LEFT_HAND_POINTS.items():
        kp[91 + j], sc[91 + j] = xy, 0.9
    for name, value in scores.items():
        sc[int(name.lstrip("k"))] = value
    return kp, sc


def px(img: np.ndarray, x: int, y: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in img[y, x])


def test_limbs_joints_and_background_have_their_colours() -> None:
    img = render_pose(*person(), H, W)
    assert img.shape == (H, W, 3) and img.dtype == np.uint8
    # Right upper arm = OpenPose limb 2 (right shoulder -> right elbow): midpoint and
    # 3 px to the side (ellipse half-width 4) carry limb colour 2; 6 px off is black.
    assert px(img, 70, 85) == sk.OPENPOSE_COLORS[2] == (255, 170, 0)
    assert px(img, 73, 85) == sk.OPENPOSE_COLORS[2]
    assert px(img, 76, 85) == BLACK
    # Left forearm = limb 5.
    assert px(img, 150, 135) == sk.OPENPOSE_COLORS[5]
    # Joints: right elbow is OpenPose joint 3, the neck (mean of shoulders) joint 1.
    assert px(img, 70, 110) == sk.OPENPOSE_COLORS[3]
    assert px(img, 110, 60) == sk.OPENPOSE_COLORS[1]
    assert px(img, 150, 110) == sk.OPENPOSE_COLORS[6]  # left elbow
    # Left foot link (ankle -> big toe) in the left lower leg's colour.
    assert px(img, 145, 225) == sk.FEET_COLORS[0] == sk.OPENPOSE_COLORS[11]
    # Background stays black.
    assert px(img, 5, 5) == BLACK and px(img, 200, 40) == BLACK
    # Hand link 0 (wrist -> thumb 1) in hue 0 (red) and link 1 in hue 1/20.
    assert px(img, 190, 140) == sk.HAND_COLORS[0] == (255, 0, 0)
    assert px(img, 200, 120) == sk.HAND_COLORS[1]
    # White hand joint, off its links (3 px below the wrist, inside radius 4).
    assert px(img, 180, 143) == (255, 255, 255)


def test_joint_below_threshold_drops_its_limbs() -> None:
    img = render_pose(*person(k8=0.29), H, W)  # right elbow
    assert px(img, 70, 110) == BLACK  # the joint
    assert px(img, 70, 85) == BLACK  # upper arm
    assert px(img, 70, 135) == BLACK  # forearm
    assert px(img, 70, 60) == sk.OPENPOSE_COLORS[2]  # right shoulder joint still drawn
    assert px(img, 90, 60) == sk.OPENPOSE_COLORS[0]  # neck -> right shoulder (limb 0)
    # The threshold itself is drawn.
    assert px(render_pose(*person(k8=0.3), H, W), 70, 85) == sk.OPENPOSE_COLORS[2]


def test_neck_follows_the_mean_shoulder_score() -> None:
    # (0.9 + 0.2) / 2 = 0.55 keeps the neck; (0.2 + 0.2) / 2 does not.
    assert px(render_pose(*person(k6=0.2), H, W), 110, 60) == sk.OPENPOSE_COLORS[1]
    img = render_pose(*person(k5=0.2, k6=0.2), H, W)
    assert px(img, 110, 60) == BLACK
    assert px(img, 110, 45) == BLACK  # neck -> nose (limb 12)


def test_hand_links_below_0_7_are_absent() -> None:
    img = render_pose(*person(k92=0.69), H, W)  # thumb 1
    assert px(img, 190, 140) == BLACK  # link 0
    assert px(img, 200, 120) == BLACK  # link 1
    assert px(img, 180, 143) == BLACK  # wrist joint: part of no drawn link
    assert px(render_pose(*person(k92=0.7), H, W), 190, 140) == sk.HAND_COLORS[0]


def test_hand_hues_are_evenly_spaced() -> None:
    assert len(sk.HAND_LINKS) == len(sk.HAND_COLORS) == 20
    for k, rgb in enumerate(sk.HAND_COLORS):
        h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
        assert abs(h - k / 20) < 2e-3 and s == 1.0 and v == 1.0


def test_no_person_and_bad_points() -> None:
    assert not render_pose(None, None, 10, 12).any()
    kp, sc = person()
    kp[8] = (np.nan, 5)  # right elbow lost: its limbs vanish, nothing crashes
    kp[10] = (1e12, -1e12)
    img = render_pose(kp, sc, H, W)
    assert px(img, 70, 85) == BLACK and px(img, 70, 60) == sk.OPENPOSE_COLORS[2]


def test_release_colours_swap_red_and_blue() -> None:
    img = render_pose(*person(), H, W, PoseStyle(swap_red_blue=True))
    assert px(img, 70, 85) == (0, 170, 255)
