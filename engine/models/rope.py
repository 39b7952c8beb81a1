"""3-D rotary position embedding, as Wan2.1 splits it over (frame, height, width).

A head of size d rotates pairs of channels: d - 4*(d//6) channels for the frame
axis, 2*(d//6) each for height and width. Tables hold 1024 positions per axis.
"""

from __future__ import annotations

import torch

TABLE_LEN = 1024


def axis_dims(head_dim: int) -> tuple[int, int, int]:
    part = head_dim // 6
    dims = (head_dim - 4 * part, 2 * part, 2 * part)
    if head_dim % 2 or any(d % 2 or d == 0 for d in dims):
        raise ValueError(
            f"head size {head_dim} does not split into even 3-D RoPE parts {dims}; "
            "choose dim/num_heads so that every part is even (e.g. 32, 64, 128)"
        )
    return dims


def _angles(positions: torch.Tensor, dim: int, theta: float = 10000.0) -> torch.Tensor:
    inv_freq = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    return torch.outer(positions.to(torch.float64), inv_freq)  # (n, dim/2)


def grid_angles(head_dim: int, f: int, h: int, w: int, *, f0: int = 0, h0: int = 0,
                w0: int = 0) -> torch.Tensor:
    """Rotation angles (f*h*w, head_dim/2) for tokens laid out frame-major."""
    df, dh, dw = axis_dims(head_dim)
    af = _angles(torch.arange(f0, f0 + f), df)
    ah = _angles(torch.arange(h0, h0 + h), dh)
    aw = _angles(torch.arange(w0, w0 + w), dw)
    angles = torch.cat(
        [
            af[:, None, None, :].expand(f, h, w, -1),
            ah[None, :, None, :].expand(f, h, w, -1),
            aw[None, None, :, :].expand(f, h, w, -1),
        ],
        dim=-1,
    )
    return angles.reshape(f * h * w, -1)


def reference_angles(head_dim: int, h: int, w: int, shift_ref_pos: bool) -> torch.Tensor:
    """Angles for the reference-image tokens (one latent frame).

    Positions start at 0; with ``shift_ref_pos`` the width positions are the last
    ``w`` entries of a table starting at -1024, i.e. -w .. -1, so the reference
    never shares a width position with the video.
    """
    return grid_angles(head_dim, 1, h, w, w0=-w if shift_ref_pos else 0)


def rope_tables(angles: torch.Tensor, device: torch.device | str) -> tuple[torch.Tensor,
                                                                           torch.Tensor]:
    """cos/sin tables (1, n, 1, d/2) in float32, ready for ``apply_rope``."""
    cos = angles.cos().to(device=device, dtype=torch.float32)[None, :, None, :]
    sin = angles.sin().to(device=device, dtype=torch.float32)[None, :, None, :]
    return cos, sin


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs of x (B, n, heads, d) in float32; returns x's dtype."""
    xf = x.float().unflatten(-1, (-1, 2))
    real, imag = xf[..., 0], xf[..., 1]
    out = torch.stack((real * cos - imag * sin, real * sin + imag * cos), dim=-1)
    return out.flatten(-2).to(x.dtype)
