"""Preview settings: the full run's chunk plan at a fraction of its cost.

A preview runs every chunk of the full session's plan (anchor, base, cond, merged), so
a user sees the whole video's layout, the anchor's background and each base chunk's
stability before committing hours of GPU time. What it changes:

- the size: each side halved and rounded down to a multiple of 16 (1280x720 ->
  640x352: 0.244 of the tokens; the DiT step's cost falls faster than the token count,
  attention being quadratic in it);
- the steps: 10 (at most the full run's);
- the anchor's shared steps: the same fraction of the sampling steps, rounded up, so
  every framing shares at least one step (-s 0 2 of 25 -> -s 0 1 of 10).

Everything else (frames per chunk, overlaps, seed, cfg, shift, share blocks, mask,
anchor) is the full run's, so the plan is the same chunk for chunk.
Measured cost on an H200: docs/benchmarks.md, "Preview sessions".
"""

from __future__ import annotations

import math
from dataclasses import replace

from engine.settings import JobSettings

PREVIEW_STEPS = 10
# What the default preview cost on the device, said when a preview is made ("" until
# measured): docs/benchmarks.md, "Preview sessions".
MEASURED = ("on an H200 a 3-chunk preview of a 1280x720, 25-step run took 152 s against "
            "about 2,050 s for the full run: 7.4 %")


def preview_side(side: int) -> int:
    """A side of the preview: half, rounded down to a multiple of 16 (at least 16)."""
    return max(16, side // 2 // 16 * 16)


def preview_settings(full: JobSettings, size: tuple[int, int] | None = None,
                     steps: int | None = None) -> JobSettings:
    """The preview of ``full``: ``size`` (height, width) and ``steps`` override the
    defaults above; the share steps follow the steps."""
    height, width = size or (preview_side(full.height), preview_side(full.width))
    n = steps if steps is not None else min(PREVIEW_STEPS, full.steps)
    s0, s1 = full.share_steps
    scale = n / full.steps if full.steps > 0 else 1.0
    share = (min(math.floor(s0 * scale), n - 1), max(1, min(n, math.ceil(s1 * scale))))
    if share[1] <= share[0]:
        share = (share[0], share[0] + 1)
    return replace(full, height=height, width=width, steps=n, share_steps=share)


def token_ratio(preview: JobSettings, full: JobSettings) -> float:
    """The preview's video tokens per frame against the full run's."""
    return (preview.height * preview.width) / (full.height * full.width)
