"""The PoseGen DiT: Wan2.1-I2V-14B's transformer with PoseGen's additions.

Module names match the release checkpoints (`pipe.dit.` prefix stripped), so a
release state dict loads unchanged. Additions over Wan2.1 I2V (spec section 3):
pose latents ride in the patch input (16 noisy + 4 mask + 16 pose channels),
hand latents are embedded and added to the patch tokens, and the reference
image's latent becomes extra tokens that share every self-attention and FFN
(modulated with timestep 0) but not the cross-attention or the head.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol, cast

import torch
import torch.nn as nn

from .attention import attention
from .rope import apply_rope, axis_dims, grid_angles, reference_angles, rope_tables

CLIP_TOKENS = 257
CLIP_DIM = 1280


@dataclass(frozen=True)
class DiTConfig:
    """Constructor keywords, as stored in the release's `model_config.json`."""

    dim: int = 5120
    in_dim: int = 36
    ffn_dim: int = 13824
    out_dim: int = 16
    text_dim: int = 4096
    freq_dim: int = 256
    eps: float = 1e-6
    patch_size: tuple[int, int, int] = (1, 2, 2)
    num_heads: int = 40
    num_layers: int = 40
    has_image_input: bool = True
    has_image_pos_emb: bool = False
    shift_ref_pos: bool = False
    use_hand: bool = True
    use_hand_proj: bool = False

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DiTConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        if "patch_size" in values:
            values["patch_size"] = tuple(values["patch_size"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["patch_size"] = list(self.patch_size)
        return d

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    def validate(self) -> None:
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not a multiple of num_heads {self.num_heads}")
        axis_dims(self.head_dim)
        if self.in_dim != 36:
            raise ValueError(f"in_dim {self.in_dim}: PoseGen's patch input has 36 channels "
                             "(16 noisy latents + 4 mask + 16 pose latents)")


class AttentionHook(Protocol):
    """What the KV-sharing logic sees of a forward (see engine/kv_share.py)."""

    def self_attention(self, block: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       n_video: int, x: torch.Tensor,
                       project_kv: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
                       ) -> torch.Tensor | None: ...

    def wants_keyword_map(self, block: int) -> bool: ...

    def keyword_map(self, block: int, q_video: torch.Tensor, k_text: torch.Tensor) -> None: ...

    def end_forward(self) -> None: ...

    def end_step(self) -> None: ...


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return y.to(x.dtype) * self.weight.to(x.dtype)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the activation dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        return nn.functional.layer_norm(x.float(), self.normalized_shape, w, b,
                                        self.eps).to(x.dtype)


def sinusoidal_embedding(dim: int, t: torch.Tensor) -> torch.Tensor:
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    args = torch.outer(t.to(torch.float64), freqs)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (x.float() * (1 + scale) + shift).to(x.dtype)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)

    def project_kv(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """K (normed, rotated) and V of input ``x``; also used on the anchor's cached input."""
        heads = (self.num_heads, -1)
        k = apply_rope(self.norm_k(self.k(x)).unflatten(-1, heads), *rope)
        return k, self.v(x).unflatten(-1, heads)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], n_video: int,
                block: int, hook: AttentionHook | None) -> torch.Tensor:
        heads = (self.num_heads, -1)
        q = apply_rope(self.norm_q(self.q(x)).unflatten(-1, heads), *rope)
        k, v = self.project_kv(x, rope)
        out = None
        if hook is not None:
            out = hook.self_attention(block, q, k, v, n_video, x,
                                      lambda t: self.project_kv(t, rope))
        if out is None:
            out = attention(q, k, v)
        return self.o(out)


class CrossAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, eps: float, has_image_input: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.has_image_input = has_image_input
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)
        if has_image_input:
            self.k_img = nn.Linear(dim, dim)
            self.v_img = nn.Linear(dim, dim)
            self.norm_k_img = RMSNorm(dim, eps)

    def forward(self, x: torch.Tensor, context: torch.Tensor, block: int,
                hook: AttentionHook | None) -> torch.Tensor:
        heads = (self.num_heads, -1)
        if self.has_image_input:
            image, text = context[:, :CLIP_TOKENS], context[:, CLIP_TOKENS:]
        else:
            image, text = None, context
        q = self.norm_q(self.q(x)).unflatten(-1, heads)
        k = self.norm_k(self.k(text)).unflatten(-1, heads)
        v = self.v(text).unflatten(-1, heads)
        if hook is not None and hook.wants_keyword_map(block):
            hook.keyword_map(block, q, k)
        out = attention(q, k, v)
        if image is not None:
            k_img = self.norm_k_img(self.k_img(image)).unflatten(-1, heads)
            v_img = self.v_img(image).unflatten(-1, heads)
            out = out + attention(q, k_img, v_img)
        return self.o(out)


class DiTBlock(nn.Module):
    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        dim = cfg.dim
        self.self_attn = SelfAttention(dim, cfg.num_heads, cfg.eps)
        self.cross_attn = CrossAttention(dim, cfg.num_heads, cfg.eps, cfg.has_image_input)
        self.norm1 = LayerNorm(dim, eps=cfg.eps, elementwise_affine=False)
        self.norm2 = LayerNorm(dim, eps=cfg.eps, elementwise_affine=False)
        self.norm3 = LayerNorm(dim, eps=cfg.eps, elementwise_affine=True)
        self.ffn = nn.Sequential(nn.Linear(dim, cfg.ffn_dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(cfg.ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(self, x: torch.Tensor, context: torch.Tensor, t_mod: torch.Tensor,
                t0_mod: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], n_video: int,
                block: int, hook: AttentionHook | None) -> torch.Tensor:
        # Rows [:n_video] are video tokens (time t), the rest reference tokens (time 0).
        mod = self.modulation.float()
        sv = (mod + t_mod).chunk(6, dim=1)
        sr = (mod + t0_mod).chunk(6, dim=1)
        video, ref = x[:, :n_video], x[:, n_video:]

        attn_in = torch.cat([modulate(self.norm1(video), sv[0], sv[1]),
                             modulate(self.norm1(ref), sr[0], sr[1])], dim=1)
        y = self.self_attn(attn_in, rope, n_video, block, hook).float()
        video = (video.float() + y[:, :n_video] * sv[2]).to(x.dtype)
        ref = (ref.float() + y[:, n_video:] * sr[2]).to(x.dtype)

        video = video + self.cross_attn(self.norm3(video), context, block, hook)

        ffn_in = torch.cat([modulate(self.norm2(video), sv[3], sv[4]),
                            modulate(self.norm2(ref), sr[3], sr[4])], dim=1)
        y = self.ffn(ffn_in).float()
        video = (video.float() + y[:, :n_video] * sv[5]).to(x.dtype)
        ref = (ref.float() + y[:, n_video:] * sr[5]).to(x.dtype)
        return torch.cat([video, ref], dim=1)


class Head(nn.Module):
    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.norm = LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.head = nn.Linear(cfg.dim, cfg.out_dim * math.prod(cfg.patch_size))
        self.modulation = nn.Parameter(torch.randn(1, 2, cfg.dim) / cfg.dim**0.5)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        shift, scale = (self.modulation.float() + t.float().unsqueeze(1)).chunk(2, dim=1)
        return self.head(modulate(self.norm(x), shift, scale))


class ImageProjection(nn.Module):
    """CLIP tokens (1280 wide) to the DiT width; optional learned positions."""

    def __init__(self, dim: int, has_pos_emb: bool) -> None:
        super().__init__()
        self.proj = nn.Sequential(LayerNorm(CLIP_DIM), nn.Linear(CLIP_DIM, CLIP_DIM), nn.GELU(),
                                  nn.Linear(CLIP_DIM, dim), LayerNorm(dim))
        if has_pos_emb:
            self.emb_pos = nn.Parameter(torch.zeros(1, CLIP_TOKENS, CLIP_DIM))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "emb_pos"):
            x = x + self.emb_pos[:, : x.shape[1]].to(x.dtype)
        return self.proj(x)


class PoseGenDiT(nn.Module):
    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        dim, patch = cfg.dim, cfg.patch_size
        self.patch_embedding = nn.Conv3d(cfg.in_dim, dim, kernel_size=patch, stride=patch)
        self.ref_patch_embedding = nn.Conv3d(cfg.out_dim, dim, kernel_size=patch, stride=patch)
        if cfg.use_hand:
            hand: nn.Module = nn.Conv3d(cfg.out_dim, dim, kernel_size=patch, stride=patch)
            if cfg.use_hand_proj:
                hand = nn.Sequential(hand, nn.Conv3d(dim, dim, kernel_size=1))
            self.hand_patch_embedding = hand
        self.text_embedding = nn.Sequential(nn.Linear(cfg.text_dim, dim),
                                            nn.GELU(approximate="tanh"), nn.Linear(dim, dim))
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, dim), nn.SiLU(),
                                            nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim * 6))
        self.blocks = nn.ModuleList([DiTBlock(cfg) for _ in range(cfg.num_layers)])
        self.head = Head(cfg)
        if cfg.has_image_input:
            self.img_emb = ImageProjection(dim, cfg.has_image_pos_emb)
        self._rope_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _time(self, timestep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = cast(nn.Linear, self.time_embedding[0]).weight  # Sequential[i] is a Module
        t = self.time_embedding(sinusoidal_embedding(self.cfg.freq_dim, timestep).to(w.dtype))
        t_mod = self.time_projection(t).float().unflatten(1, (6, self.cfg.dim))
        return t.float(), t_mod

    def _rope(self, grid: tuple[int, int, int], ref_grid: tuple[int, int],
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (grid, ref_grid, str(device))
        if key not in self._rope_cache:
            hd = self.cfg.head_dim
            angles = torch.cat([grid_angles(hd, *grid),
                                reference_angles(hd, *ref_grid, self.cfg.shift_ref_pos)])
            self._rope_cache.clear()
            self._rope_cache[key] = rope_tables(angles, device)
        return self._rope_cache[key]

    def embed_context(self, text: torch.Tensor, clip: torch.Tensor | None) -> torch.Tensor:
        """Cross-attention context: projected CLIP tokens, then projected text tokens."""
        context = self.text_embedding(text)
        if self.cfg.has_image_input:
            if clip is None:
                raise ValueError("this DiT has image input: pass the CLIP tokens")
            context = torch.cat([self.img_emb(clip), context], dim=1)
        return context

    def forward(self, latents: torch.Tensor, cond: torch.Tensor, hand: torch.Tensor | None,
                ref: torch.Tensor, context: torch.Tensor, timestep: torch.Tensor,
                hook: AttentionHook | None = None) -> torch.Tensor:
        """Predict the flow for ``latents`` (1, 16, F, H, W).

        cond: mask (4) + pose latents (16) channels, same F, H, W; hand: hand
        latents (1, 16, F, H, W); ref: reference latent (1, 16, 1, H, W);
        context: the output of ``embed_context``; timestep: (1,) in [0, 1000].
        """
        dtype = self.patch_embedding.weight.dtype
        x = self.patch_embedding(torch.cat([latents, cond], dim=1).to(dtype))
        grid = tuple(x.shape[2:])
        x = x.flatten(2).transpose(1, 2)
        if self.cfg.use_hand:
            if hand is None:
                raise ValueError("this DiT uses hand latents: pass them")
            x = x + self.hand_patch_embedding(hand.to(dtype)).flatten(2).transpose(1, 2)
        r = self.ref_patch_embedding(ref.to(dtype))
        ref_grid = tuple(r.shape[3:])
        r = r.flatten(2).transpose(1, 2)
        n_video = x.shape[1]
        tokens = torch.cat([x, r], dim=1)

        t, t_mod = self._time(timestep)
        _, t0_mod = self._time(torch.zeros_like(timestep))
        rope = self._rope(grid, ref_grid, tokens.device)
        context = context.to(tokens.dtype)
        for i, block in enumerate(self.blocks):
            tokens = block(tokens, context, t_mod, t0_mod, rope, n_video, i, hook)
        if hook is not None:
            hook.end_forward()
        out = self.head(tokens[:, :n_video], t)
        return self._unpatchify(out, grid)

    def _unpatchify(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        f, h, w = grid
        pf, ph, pw = self.cfg.patch_size
        c = self.cfg.out_dim
        x = x.reshape(x.shape[0], f, h, w, pf, ph, pw, c)
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.reshape(x.shape[0], c, f * pf, h * ph, w * pw)
