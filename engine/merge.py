"""Join the chunk videos into one (ENGINE-SPEC section 6)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.chunk_plan import ChunkPlan
from engine.media import MediaError


def merge_chunks(chunk_frames: Sequence[np.ndarray], plan: ChunkPlan) -> np.ndarray:
    """Cross-fade the chunks (index order, each N x H x W x 3 uint8) into one video.

    Chunk i is laid at its start frame; over the ``overlap_prev`` frames it shares with
    the chunk before, the older frames fade out linearly (weight 1 -> 0). The result
    is cut to ``plan.output_frames``.
    """
    _check(chunk_frames, plan)
    n_frames = plan.spec.frames
    height, width = chunk_frames[0].shape[1:3]
    # Overlaps of neighbouring chunk pairs are disjoint (Hd + Tl < N), so every frame is
    # blended at most once: the older frames in an overlap are chunk i-1's own.
    out = np.empty((plan.covered_frames, height, width, 3), dtype=np.uint8)
    out[:n_frames] = chunk_frames[0]
    for chunk, frames in zip(plan.chunks[1:], chunk_frames[1:], strict=True):
        n = chunk.overlap_prev
        out[chunk.start:chunk.start + n] = crossfade(out[chunk.start:chunk.start + n],
                                                     frames[:n])
        out[chunk.start + n:chunk.end] = frames[n:]
    return out[:plan.output_frames]


def crossfade(older: np.ndarray, newer: np.ndarray) -> np.ndarray:
    """The release's blend of two uint8 runs of ``n`` frames (ENGINE-SPEC section 10).

    Frame j is ``w_j * older + (1 - w_j) * newer`` in float64 with
    ``w = linspace(1, 0, n)``, then truncated to uint8 by the cast (not rounded).
    """
    out = np.empty_like(older)
    # One float64 frame at a time: a whole overlap at 720p would be ~0.5 GB of float64.
    for j, w in enumerate(np.linspace(1.0, 0.0, len(older)).tolist()):
        out[j] = (w * older[j] + (1.0 - w) * newer[j]).astype(np.uint8)
    return out


def _check(chunk_frames: Sequence[np.ndarray], plan: ChunkPlan) -> None:
    if len(chunk_frames) != plan.num_chunks:
        raise MediaError(
            f"merge needs all {plan.num_chunks} chunk videos, got {len(chunk_frames)}; "
            f"finish the missing chunks first")
    expected = None
    for i, frames in enumerate(chunk_frames):
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise MediaError(f"chunk {i}: expected uint8 N x H x W x 3 frames, got "
                             f"{frames.dtype} {frames.shape}; regenerate this chunk")
        if frames.shape[0] != plan.spec.frames:
            raise MediaError(f"chunk {i}: has {frames.shape[0]} frames, the plan's chunks have "
                             f"N={plan.spec.frames}; regenerate this chunk")
        if expected is None:
            expected = frames.shape
        elif frames.shape != expected:
            raise MediaError(f"chunk {i}: frame size {frames.shape[1:3]} differs from chunk 0's "
                             f"{expected[1:3]}; regenerate the chunks at one resolution")
