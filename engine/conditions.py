"""Build a chunk's condition tensors from the inputs (spec sections 2 and 4)."""

from __future__ import annotations

import numpy as np
import torch

from engine.chunk_plan import ChunkPlan
from engine.media import center_crop_resize


def frame_mask(frames: int, height: int, width: int, head: int, tail: int) -> torch.Tensor:
    """The 4 mask channels (4, latent frames, height/8, width/8).

    1 on the first ``head`` and last ``tail`` pixel frames (0 to leave one out);
    frame 0 is repeated 4 times so the N+3 frames fold into groups of 4, one
    group per latent frame, which become the channels.
    """
    h, w = height // 8, width // 8
    m = torch.zeros(frames, h, w)
    if head:
        m[:head] = 1
    if tail:
        m[frames - tail:] = 1
    m = torch.cat([m[:1].repeat(4, 1, 1), m[1:]], dim=0)
    return m.reshape(-1, 4, h, w).transpose(0, 1).contiguous()


def condition_clip(video: np.ndarray, plan: ChunkPlan, index: int, height: int, width: int,
                   head_frames: np.ndarray | None = None, tail_frames: np.ndarray | None = None
                   ) -> torch.Tensor:
    """A chunk's pose (or hand) clip (3, N, H, W) in [-1, 1].

    ``video`` is the whole driving-side clip (L, h0, w0, 3) uint8. For cond
    chunks the first/last frames are overwritten by the neighbours' decoded
    frames (already at H x W).
    """
    clip = center_crop_resize(video[plan.condition_indices(index)], height, width)
    if head_frames is not None:
        clip[:, : len(head_frames)] = center_crop_resize(head_frames, height, width)
    if tail_frames is not None:
        clip[:, clip.shape[1] - len(tail_frames):] = center_crop_resize(tail_frames, height,
                                                                       width)
    return clip
