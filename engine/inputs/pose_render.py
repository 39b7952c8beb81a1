"""OpenPose-style pose frames from COCO-WholeBody keypoints (ENGINE-SPEC section 2).

Body: limbs as filled ellipses in the OpenPose rainbow, then joints as filled circles
(score threshold 0.3); feet links drawn like limbs. Hands: joints as white circles
under 20 thin links in evenly spaced hues (threshold 0.7). A point is drawn when its
score is at least the threshold; a link when both its ends are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from engine.inputs import skeleton as sk

Color = tuple[int, int, int]


@dataclass(frozen=True)
class PoseStyle:
    body_threshold: float = 0.3
    hand_threshold: float = 0.7
    body_thickness: int = 4  # half-width of a limb ellipse
    hand_thickness: int = 2  # width of a hand link
    radius: int = 4  # body and hand joints
    # The release draws these RGB colours into frames it writes as BGR, so its pose.mp4
    # shows red and blue swapped; True reproduces that look.
    swap_red_blue: bool = False


DEFAULT_STYLE = PoseStyle()

def render_pose(keypoints: np.ndarray | None, scores: np.ndarray | None, height: int,
                width: int, style: PoseStyle = DEFAULT_STYLE) -> np.ndarray:
    """One uint8 H x W x 3 RGB frame: the skeleton of one person on black.

    ``keypoints`` is 133 x 2 (pixels of the driving frame), ``scores`` 133; None (no
    person detected) gives a black frame.
    """
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    if keypoints is None or scores is None:
        return canvas
    keypoints, scores = _sanitise(keypoints, scores, height, width)
    body, body_conf = sk.openpose_body(keypoints, scores)
    # Scores are float32 (Sapiens'); compare in float32 so a score of 0.7 passes 0.7.
    _draw_body(canvas, body, body_conf >= np.float32(style.body_threshold), style)
    for hand in (sk.LEFT_HAND, sk.RIGHT_HAND):
        _draw_hand(canvas, keypoints[hand], scores[hand] >= np.float32(style.hand_threshold),
                   style)
    if style.swap_red_blue:
        canvas = np.ascontiguousarray(canvas[..., ::-1])
    return canvas


def blend(overlay: np.ndarray, frame: np.ndarray, weight: float) -> np.ndarray:
    """``weight * overlay + (1 - weight) * frame``, uint8 (the release's preview blend)."""
    return cv2.addWeighted(overlay, weight, frame, 1.0 - weight, 0.0)


def _sanitise(keypoints: np.ndarray, scores: np.ndarray, height: int, width: int
              ) -> tuple[np.ndarray, np.ndarray]:
    keypoints = np.asarray(keypoints, dtype=np.float64).reshape(sk.NUM_KEYPOINTS, 2)
    scores = np.asarray(scores, dtype=np.float32).reshape(sk.NUM_KEYPOINTS).copy()
    # A non-finite point is not drawn; far-away ones are clamped so OpenCV's int
    # coordinates cannot overflow (what lies that far off the frame is not visible anyway).
    bad = ~np.isfinite(keypoints).all(axis=1) | ~np.isfinite(scores)
    scores[bad] = -np.inf
    keypoints = np.nan_to_num(keypoints, nan=0.0, posinf=0.0, neginf=0.0)
    span = 4 * max(height, width)
    return np.clip(keypoints, -span, span), scores


def _pixel(point: np.ndarray) -> tuple[int, int]:
    return round(float(point[0])), round(float(point[1]))


def _draw_body(canvas: np.ndarray, points: np.ndarray, visible: np.ndarray,
               style: PoseStyle) -> None:
    limbs = (tuple(zip(sk.BODY_LIMBS, sk.OPENPOSE_COLORS[:len(sk.BODY_LIMBS)], strict=True))
             + tuple(zip(sk.FEET_LIMBS, sk.FEET_COLORS, strict=True)))
    for (a, b), color in limbs:
        if visible[a] and visible[b]:
            _fill_limb(canvas, points[a], points[b], style.body_thickness, color)
    for j in range(len(sk.OPENPOSE_FROM_COCO)):  # feet points get no circle (see docs)
        if visible[j]:
            cv2.circle(canvas, _pixel(points[j]), style.radius, sk.OPENPOSE_COLORS[j],
                       thickness=-1)


def _fill_limb(canvas: np.ndarray, p: np.ndarray, q: np.ndarray, half_width: int,
               color: Color) -> None:
    """A filled ellipse from ``p`` to ``q``, ``half_width`` pixels across its minor axis."""
    dx, dy = float(q[0] - p[0]), float(q[1] - p[1])
    centre = _pixel((p + q) / 2)
    half_length = round(math.hypot(dx, dy) / 2)
    angle = round(math.degrees(math.atan2(dy, dx)))
    # An N x 2 int32 array already (the stub says a sequence of points): asarray is free.
    polygon = np.asarray(cv2.ellipse2Poly(centre, (half_length, half_width), angle, 0, 360, 1))
    cv2.fillConvexPoly(canvas, polygon, color)


def _draw_hand(canvas: np.ndarray, points: np.ndarray, visible: np.ndarray,
               style: PoseStyle) -> None:
    links = [(a, b, c) for (a, b), c in zip(sk.HAND_LINKS, sk.HAND_COLORS, strict=True)
             if visible[a] and visible[b]]
    # Joints first, links over them (the release's order); only joints of drawn links.
    for j in sorted({j for a, b, _ in links for j in (a, b)}):
        cv2.circle(canvas, _pixel(points[j]), style.radius, sk.HAND_JOINT_COLOR, thickness=-1)
    for a, b, color in links:
        cv2.line(canvas, _pixel(points[a]), _pixel(points[b]), color,
                 thickness=style.hand_thickness)
