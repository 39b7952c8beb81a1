"""Attention kernels and the pieces of PoseGen's background sharing.

Tensors are laid out (batch, tokens, heads, head_dim). Nothing here builds a
token x token mask: the shared attention gathers the query rows whose output
is kept and attends only with those.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

OTSU_BINS = 256
_OTSU_EPS = 1e-8
# The release divides a map's range plus this when it min-max normalises a keyword map.
MAP_NORM_EPS = 1e-6

# Fastest first, as measured at the 79,200-token self-attention on an H100 by
# bench/dit_step.py (docs/benchmarks.md): cuDNN, then flash, then memory-efficient.
# All three are exact softmax attention (same error against float32). A fixed order,
# rather than timing at run time, keeps a resumed chunk on the same kernel.
BACKENDS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
CUDA_ORDER = ("cudnn", "flash", "efficient", "math")


def backend_order(first: str | None = None) -> list[SDPBackend]:
    """CUDA backends in preference order; ``first`` (POSEGEN_ATTENTION) goes first."""
    first = first if first is not None else os.environ.get("POSEGEN_ATTENTION", "")
    first = first.strip().lower()
    if first and first not in BACKENDS:
        raise ValueError(f"POSEGEN_ATTENTION={first!r}: choose one of {', '.join(BACKENDS)}")
    names = ([first] if first else []) + [n for n in CUDA_ORDER if n != first]
    return [BACKENDS[n] for n in names]


_CUDA_BACKENDS = backend_order()


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention; returns (B, n, heads*head_dim)."""
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if q.is_cuda:
        with sdpa_kernel(_CUDA_BACKENDS, set_priority=True):
            out = F.scaled_dot_product_attention(q, k, v)
    else:
        out = F.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2).flatten(2)


def keyword_map(q: torch.Tensor, k_keyword: torch.Tensor, grid: tuple[int, int, int]
                ) -> torch.Tensor:
    """Cross-attention score of every video query against the keyword key.

    q: (1, n_video, heads, d); k_keyword: (1, heads, d). Returns (f, h, w) float32:
    the head-mean of q.k/sqrt(d) (no softmax), min-max normalised per frame as the
    release does it, ``(m - min) / (max - min + 1e-6)``.
    """
    scale = q.shape[-1] ** -0.5
    scores = torch.einsum("bnhd,bhd->bnh", q.float(), k_keyword.float()) * scale
    m = scores.mean(dim=-1)[0].reshape(grid)
    lo = m.amin(dim=(1, 2), keepdim=True)
    hi = m.amax(dim=(1, 2), keepdim=True)
    return (m - lo) / (hi - lo + MAP_NORM_EPS)


def otsu_foreground(maps: torch.Tensor) -> torch.Tensor:
    """Binarise each frame of ``maps`` (f, h, w), values in [0, 1], by Otsu's threshold.

    ENGINE-SPEC section 10, in the release's float32 arithmetic: a histogram of 256
    equal bins over [0, 1] (1.0 in the last bin), class statistics from the bin
    centres, t* the first bin maximising the between-class variance w0*w1*(m0-m1)^2,
    and foreground = value > the centre of bin t*. Values inside bin t* above its
    centre are foreground; a rule of "bins after t*" would call them background.
    """
    f = maps.shape[0]
    flat = maps.reshape(f, -1).float()
    n = flat.shape[1]
    # floor(v * 256) is exact in float32 (a power-of-two scale); 1.0 joins bin 255.
    bins = (flat * OTSU_BINS).floor().long().clamp_(0, OTSU_BINS - 1)
    counts = torch.zeros(f, OTSU_BINS, dtype=torch.float32, device=maps.device)
    counts.scatter_add_(1, bins, torch.ones_like(flat))
    prob = counts / n
    centres = (torch.arange(OTSU_BINS, dtype=torch.float32, device=maps.device) * 2 + 1) \
        / (2 * OTSU_BINS)
    w0 = prob.cumsum(1)
    mean0_sum = (prob * centres).cumsum(1)
    w1 = 1.0 - w0
    total = mean0_sum[:, -1:]
    # An empty class contributes nothing: its mean is taken as 0 (the release's guard).
    m0 = torch.where(w0 > _OTSU_EPS, mean0_sum / (w0 + _OTSU_EPS), torch.zeros_like(w0))
    m1 = torch.where(w1 > _OTSU_EPS, (total - mean0_sum) / (w1 + _OTSU_EPS),
                     torch.zeros_like(w1))
    between = w0 * w1 * (m0 - m1) ** 2
    t = between.argmax(dim=1)  # the first maximum on ties
    threshold = centres[t].reshape(f, *([1] * (maps.dim() - 1)))
    return maps.float() > threshold


def split_rows(foreground: torch.Tensor, n: int, device: torch.device | str
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices (own, shared) for ``shared_attention``, each in increasing order.

    Own rows are the foreground video tokens; shared rows are the background video
    tokens and the reference tokens after them. One host sync (the group sizes).
    """
    own = torch.zeros(n, dtype=torch.bool, device=device)
    fg = foreground.reshape(-1).to(device)
    own[: fg.numel()] = fg
    order = torch.argsort(own.to(torch.int8), stable=True)  # shared rows, then own rows
    n_shared = n - int(own.sum())
    return order[n_shared:], order[:n_shared]


def shared_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     k_anchor: torch.Tensor, v_anchor: torch.Tensor,
                     rows: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """Self-attention output with the background taken from the anchor chunk.

    ``rows`` = (own, shared) from ``split_rows``: own rows (the foreground video
    tokens) attend to this chunk's own k/v; shared rows (background video tokens
    and the reference tokens) attend to the anchor's cached k/v. With ``rows``
    None (mask off) every token takes the anchor output. Each row is computed
    once, by the attention whose output is kept.
    """
    if rows is None:
        return attention(q, k_anchor, v_anchor)
    own_idx, shared_idx = rows
    out = q.new_empty(q.shape[0], q.shape[1], q.shape[2] * q.shape[3])
    if own_idx.numel():
        out[:, own_idx] = attention(q[:, own_idx], k, v)
    if shared_idx.numel():
        out[:, shared_idx] = attention(q[:, shared_idx], k_anchor, v_anchor)
    return out
