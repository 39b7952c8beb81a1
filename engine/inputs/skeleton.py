"""Keypoint layouts: Sapiens' COCO-WholeBody (133 points) and the OpenPose drawing order.

COCO-WholeBody: 0-16 body (COCO order), 17-22 feet, 23-90 face, 91-111 left hand,
112-132 right hand. The drawing uses the 18-point OpenPose body (a neck inserted as
the mean of the shoulders), the six feet points after it, and the two hands.
"""

from __future__ import annotations

import colorsys

import numpy as np

NUM_KEYPOINTS = 133
LEFT_HAND = slice(91, 112)
RIGHT_HAND = slice(112, 133)

# COCO body indices used below.
_L_SHOULDER, _R_SHOULDER = 5, 6

# OpenPose 18-point order -> COCO-WholeBody index (None: the neck, computed).
# OpenPose: 0 nose, 1 neck, 2-4 right arm, 5-7 left arm, 8-10 right leg, 11-13 left leg,
# 14/15 right/left eye, 16/17 right/left ear. "Right" is the person's right.
OPENPOSE_FROM_COCO: tuple[int | None, ...] = (
    0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
# Feet after the 18 body points (18-23): left big toe, small toe, heel; then right.
FEET_FROM_COCO = (17, 18, 19, 20, 21, 22)
NUM_BODY = len(OPENPOSE_FROM_COCO) + len(FEET_FROM_COCO)  # 24 drawn body points

NOSE, NECK, R_ELBOW, R_ANKLE, L_ANKLE = 0, 1, 3, 10, 13

# The 17 OpenPose limbs, in the order that fixes their colours.
BODY_LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
              (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
# Ankle to big toe, small toe and heel on each side.
FEET_LIMBS = ((L_ANKLE, 18), (L_ANKLE, 19), (L_ANKLE, 20),
              (R_ANKLE, 21), (R_ANKLE, 22), (R_ANKLE, 23))

# The OpenPose rainbow (RGB): limb i and joint i take colour i.
OPENPOSE_COLORS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0),
                   (85, 255, 0), (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255),
                   (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255), (170, 0, 255),
                   (255, 0, 255), (255, 0, 170), (255, 0, 85))
# The release's feet colours live in a binary config; a foot takes its lower leg's colour
# (knee-ankle limb: right 8, left 11) so it reads as part of that leg.
FEET_COLORS = (OPENPOSE_COLORS[11],) * 3 + (OPENPOSE_COLORS[8],) * 3

# 21 points per hand: 0 wrist, then 4 per finger from thumb to little finger.
HAND_LINKS = tuple(pair for finger in range(5) for pair in
                   ((0 if j == 0 else 4 * finger + j, 4 * finger + j + 1) for j in range(4)))


def _hsv_rgb(hue: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(hue, 1.0, 1.0)
    return round(r * 255), round(g * 255), round(b * 255)


# Link k of a hand: hue k/20, full saturation and value.
HAND_COLORS = tuple(_hsv_rgb(k / len(HAND_LINKS)) for k in range(len(HAND_LINKS)))
HAND_JOINT_COLOR = (255, 255, 255)


def openpose_body(keypoints: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(24 x 2 points, 24 scores): 18 OpenPose body points, then the 6 feet points.

    The neck is the mean of the shoulders, point and score alike (as the release), so
    one confident shoulder can carry it over the threshold.
    """
    points = np.empty((NUM_BODY, 2), dtype=np.float64)
    conf = np.empty(NUM_BODY, dtype=np.float32)
    for dst, src in enumerate(OPENPOSE_FROM_COCO + FEET_FROM_COCO):
        if src is None:
            points[dst] = (keypoints[_L_SHOULDER] + keypoints[_R_SHOULDER]) / 2
            conf[dst] = (scores[_L_SHOULDER] + scores[_R_SHOULDER]) / 2
        else:
            points[dst] = keypoints[src]
            conf[dst] = scores[src]
    return points, conf
