"""Synthetic, deterministic job inputs for smoke tests and demos without real data.

Writes a reference image of a drawn figure, an OpenPose-style pose video of that
figure walking in place and waving, a matching hand video and a prompt.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from engine.atomic import atomic_write_bytes, atomic_write_text
from engine.media import MediaError, write_mp4

PROMPT = "a woman in a red dress dances in a sunlit studio"

# OpenPose 18-point body: 0 nose, 1 neck, 2-4 right arm, 5-7 left arm, 8-10 right leg,
# 11-13 left leg, 14/15 eyes, 16/17 ears. The person's right is the image's left.
LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
         (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
# The OpenPose rainbow: one hue per limb / joint, red through magenta (RGB).
COLORS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0),
          (85, 255, 0), (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255),
          (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255), (170, 0, 255),
          (255, 0, 255), (255, 0, 170), (255, 0, 85))

RIGHT_WRIST, LEFT_WRIST, RIGHT_ELBOW, LEFT_ELBOW = 4, 7, 3, 6


def write_sample_inputs(out_dir: str | os.PathLike[str], frames: int = 300, fps: float = 30,
                        height: int = 640, width: int = 360) -> dict[str, Path]:
    """Write reference.png, pose.mp4, hand.mp4 and prompt.txt into ``out_dir``."""
    if frames < 1 or fps <= 0 or height < 16 or width < 16:
        raise MediaError(f"sample inputs: need frames >= 1, fps > 0 and a size of at least "
                         f"16x16, got frames={frames} fps={fps} size={height}x{width}")
    out = Path(out_dir)
    paths = {name: out / file for name, file in (
        ("reference", "reference.png"), ("pose", "pose.mp4"), ("hand", "hand.mp4"),
        ("prompt", "prompt.txt"))}
    rig = _Rig(height, width)

    ok, png = cv2.imencode(".png", cv2.cvtColor(rig.reference(), cv2.COLOR_RGB2BGR))
    if not ok:
        raise MediaError(f"{paths['reference']}: PNG encoding failed")
    atomic_write_bytes(paths["reference"], png.tobytes())
    # Generators keep one frame in memory at a time, whatever the length.
    write_mp4(paths["pose"], rig.pose_frames(frames, fps), fps)
    write_mp4(paths["hand"], rig.hand_frames(frames, fps), fps)
    atomic_write_text(paths["prompt"], PROMPT + "\n")
    return paths


class _Rig:
    """A stick figure with fixed proportions, posed as a function of time."""

    def __init__(self, height: int, width: int) -> None:
        self.h, self.w = height, width
        self.unit = min(0.8 * height, 1.3 * width)  # figure height, fits portrait and landscape
        self.cx = width / 2
        self.neck_y = (height - self.unit) / 2 + 0.18 * self.unit
        self.stick = max(1, round(4 * min(height, width) / 720))  # OpenPose widths at 720 px
        self.ys, self.xs = np.mgrid[0:height, 0:width].astype(np.float32)

    def joints(self, t: float) -> np.ndarray:
        """18 x 2 pixel coordinates (x, y) at time ``t`` seconds."""
        u = self.unit
        phase = 2 * math.pi * 0.8 * t  # walking cadence
        x0 = self.cx + 0.03 * u * math.sin(phase / 2)
        y0 = self.neck_y + 0.01 * u * abs(math.sin(phase))

        def at(dx: float, dy: float) -> tuple[float, float]:
            return x0 + dx * u, y0 + dy * u

        def step(start: tuple[float, float], length: float, angle: float,
                 side: int) -> tuple[float, float]:
            # angle 0 points down; positive swings outward on the given side (-1 = image left)
            return (start[0] + side * length * u * math.sin(angle),
                    start[1] + length * u * math.cos(angle))

        p: list[tuple[float, float]] = [(0.0, 0.0)] * 18
        p[1] = at(0, 0)
        p[0] = at(0, -0.09)
        p[14], p[15] = at(-0.025, -0.11), at(0.025, -0.11)
        p[16], p[17] = at(-0.05, -0.10), at(0.05, -0.10)
        p[2], p[5] = at(-0.1, 0.01), at(0.1, 0.01)
        # Right arm waves overhead; left arm swings against the legs.
        p[3] = step(p[2], 0.16, 2.2, -1)
        p[4] = step(p[3], 0.14, 2.8 + 0.5 * math.sin(2 * math.pi * t), -1)
        p[6] = step(p[5], 0.16, 0.15 - 0.3 * math.sin(phase), 1)
        p[7] = step(p[6], 0.14, 0.35 - 0.3 * math.sin(phase), 1)
        p[8], p[11] = at(-0.06, 0.3), at(0.06, 0.3)
        swing = 0.3 * math.sin(phase)
        p[9] = step(p[8], 0.22, swing, -1)
        p[10] = step(p[9], 0.22, swing - 0.35 * max(0.0, math.sin(phase)), -1)
        p[12] = step(p[11], 0.22, swing, 1)
        p[13] = step(p[12], 0.22, swing - 0.35 * max(0.0, -math.sin(phase)), 1)
        return np.asarray(p, dtype=np.float64)

    def pose_frames(self, frames: int, fps: float) -> Iterator[np.ndarray]:
        for f in range(frames):
            yield self.draw_pose(self.joints(f / fps))

    def hand_frames(self, frames: int, fps: float) -> Iterator[np.ndarray]:
        for f in range(frames):
            yield self.draw_hands(self.joints(f / fps))

    def draw_pose(self, pts: np.ndarray) -> np.ndarray:
        canvas = np.zeros((self.h, self.w, 3), dtype=np.uint8)
        for k, (a, b) in enumerate(LIMBS):
            (xa, ya), (xb, yb) = pts[a], pts[b]
            length = math.hypot(xb - xa, yb - ya) / 2
            angle = math.degrees(math.atan2(yb - ya, xb - xa))
            # An int32 array already (the stub says a sequence of points): asarray is free.
            poly = np.asarray(cv2.ellipse2Poly((round((xa + xb) / 2), round((ya + yb) / 2)),
                                               (max(1, round(length)), self.stick),
                                               round(angle), 0, 360, 1))
            cv2.fillConvexPoly(canvas, poly, tuple(int(0.6 * c) for c in COLORS[k]))
        for k, (x, y) in enumerate(pts):
            cv2.circle(canvas, (round(x), round(y)), self.stick, COLORS[k], -1)
        return canvas

    def draw_hands(self, pts: np.ndarray) -> np.ndarray:
        """Hand-sized patches beyond each wrist, shaded like a surface-normal map."""
        canvas = np.zeros((self.h, self.w, 3), dtype=np.uint8)
        for wrist, elbow in ((RIGHT_WRIST, RIGHT_ELBOW), (LEFT_WRIST, LEFT_ELBOW)):
            direction = pts[wrist] - pts[elbow]
            direction /= max(np.linalg.norm(direction), 1e-6)
            centre = pts[wrist] + 0.04 * self.unit * direction
            axes = (max(1, round(0.045 * self.unit)), max(1, round(0.025 * self.unit)))
            angle = round(math.degrees(math.atan2(direction[1], direction[0])))
            mask = np.zeros((self.h, self.w), dtype=np.uint8)
            cv2.ellipse(mask, (round(centre[0]), round(centre[1])), axes, angle, 0, 360, 255, -1)
            inside = mask > 0
            nx = (self.xs[inside] - centre[0]) / axes[0]
            ny = (self.ys[inside] - centre[1]) / axes[0]
            canvas[inside] = np.stack([128 + 100 * np.clip(nx, -1, 1),
                                       128 - 100 * np.clip(ny, -1, 1),
                                       np.full_like(nx, 220)], axis=-1).astype(np.uint8)
        return canvas

    def reference(self) -> np.ndarray:
        """The figure at t = 0 as a dressed person in front of a studio backdrop."""
        img = self._backdrop()
        pts = self.joints(0.0)
        u = self.unit
        skin, dress, hair, shoe = (236, 188, 160), (200, 30, 40), (70, 40, 25), (40, 30, 30)

        def ip(p: np.ndarray) -> tuple[int, int]:
            return round(p[0]), round(p[1])

        limb = max(1, round(0.035 * u))
        for a, b in ((8, 9), (9, 10), (11, 12), (12, 13)):
            cv2.line(img, ip(pts[a]), ip(pts[b]), skin, limb, cv2.LINE_AA)
        for ankle in (10, 13):
            cv2.ellipse(img, ip(pts[ankle] + (0, 0.01 * u)), (limb, max(1, limb // 2)), 0, 0, 360,
                        shoe, -1, cv2.LINE_AA)
        # Dress: fitted bodice from the shoulders to the waist, flared skirt to the knees.
        waist = (pts[8] + pts[11]) / 2 + (0, -0.05 * u)
        knee_y = (pts[9][1] + pts[12][1]) / 2
        bodice = np.array([pts[2] + (0.01 * u, 0), pts[5] - (0.01 * u, 0),
                           waist + (0.06 * u, 0), waist - (0.06 * u, 0)])
        skirt = np.array([waist - (0.06 * u, 0), waist + (0.06 * u, 0),
                          (waist[0] + 0.14 * u, knee_y), (waist[0] - 0.14 * u, knee_y)])
        for poly in (bodice, skirt):
            cv2.fillPoly(img, [np.round(poly).astype(np.int32)], dress, cv2.LINE_AA)
        for a, b in ((2, 3), (3, 4), (5, 6), (6, 7)):
            cv2.line(img, ip(pts[a]), ip(pts[b]), skin, limb, cv2.LINE_AA)
        for wrist in (4, 7):
            cv2.circle(img, ip(pts[wrist]), max(1, round(0.025 * u)), skin, -1, cv2.LINE_AA)
        cv2.line(img, ip(pts[1]), ip(pts[0]), skin, max(1, round(0.04 * u)), cv2.LINE_AA)
        head = pts[0] + (0, -0.02 * u)
        cv2.ellipse(img, ip(head + (0, -0.01 * u)), (round(0.06 * u), round(0.075 * u)), 0, 0, 360,
                    hair, -1, cv2.LINE_AA)
        cv2.ellipse(img, ip(head + (0, 0.01 * u)), (round(0.045 * u), round(0.06 * u)), 0, 0, 360,
                    skin, -1, cv2.LINE_AA)
        for eye in (14, 15):
            cv2.circle(img, ip(pts[eye] + (0, 0.02 * u)), max(1, round(0.006 * u)), (40, 30, 30),
                       -1, cv2.LINE_AA)
        return img

    def _backdrop(self) -> np.ndarray:
        """Warm wall with soft diagonal stripes over a planked floor, plus fixed-seed grain."""
        ys, xs = self.ys, self.xs
        light = 1.0 - 0.35 * ys / self.h
        stripes = 0.06 * np.sin((xs + ys) * (2 * math.pi / max(8.0, self.w / 12)))
        img = np.stack([235 * light, 215 * light, 170 * light], axis=-1) * (1 + stripes)[..., None]
        floor = ys > self.neck_y + 0.72 * self.unit
        planks = (xs.astype(np.int32) // max(4, self.w // 9)) % 2
        img[floor] = np.stack([150 + 20 * planks[floor], 105 + 15 * planks[floor],
                               70 + 10 * planks[floor]], axis=-1)
        grain = np.random.default_rng(0).normal(0.0, 4.0, img.shape)
        return np.clip(img + grain, 0, 255).astype(np.uint8)
