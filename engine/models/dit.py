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

    def project_q(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]
                  ) -> torch.Tensor:
        return apply_rope(self.norm_q(self.q(x)).unflatten(-1, (self.num_heads, -1)), *rope)

    def project_kv(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """K (normed, rotated) and V of input ``x``; also used on the anchor's cached input."""
        heads = (self.num_heads, -1)
        k = apply_rope(self.norm_k(self.k(x)).unflatten(-1, heads), *rope)
        return k, self.v(x).unflatten(-1, heads)


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

    def project(self, x: torch.Tensor, context: torch.Tensor) -> CrossProjections:
        """q of ``x``; k, v of the text tokens and, with image input, of the CLIP tokens."""
        heads = (self.num_heads, -1)
        if self.has_image_input:
            image, text = context[:, :CLIP_TOKENS], context[:, CLIP_TOKENS:]
        else:
            image, text = None, context
        q = self.norm_q(self.q(x)).unflatten(-1, heads)
        k = self.norm_k(self.k(text)).unflatten(-1, heads)
        v = self.v(text).unflatten(-1, heads)
        k_img = v_img = None
        if image is not None:
            k_img = self.norm_k_img(self.k_img(image)).unflatten(-1, heads)
            v_img = self.v_img(image).unflatten(-1, heads)
        return q, k, v, k_img, v_img


# q, k (text), v (text), k (image), v (image) of a cross-attention; the image pair is None
# for a DiT without image input.
CrossProjections = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None,
                         torch.Tensor | None]


# -- a block's computation, in stages -------------------------------------------------------
#
# A block is five pure tensor functions (`BlockStages`) with the attention kernels and the
# KV-sharing hooks between them. `engine/compiler.py` compiles each function once
# (`torch.compile`, the block passed as an argument) and every block of both DiTs reuses
# that code: the float32 elementwise work around each matmul (modulation, norms, RoPE,
# residuals) fuses, while the attention kernels and the hooks, which save, load and
# branch on the host, stay eager between the stages. K and V always come from the one
# `project_kv` stage, so a base chunk recomputing them from the anchor's cached input
# runs the very code the anchor attended with.


def _mods(blk: DiTBlock, t_mod: torch.Tensor, t0_mod: torch.Tensor
          ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """The six modulation vectors of the video tokens (time t) and reference tokens (0)."""
    mod = blk.modulation.float()
    return (mod + t_mod).chunk(6, dim=1), (mod + t0_mod).chunk(6, dim=1)


def stage_attn_in(blk: DiTBlock, x: torch.Tensor, t_mod: torch.Tensor, t0_mod: torch.Tensor,
                  cos: torch.Tensor, sin: torch.Tensor, n_video: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-attention input (normed, modulated) of tokens ``x``, and its q."""
    # Rows [:n_video] are video tokens (time t), the rest reference tokens (time 0).
    sv, sr = _mods(blk, t_mod, t0_mod)
    video, ref = x[:, :n_video], x[:, n_video:]
    attn_in = torch.cat([modulate(blk.norm1(video), sv[0], sv[1]),
                         modulate(blk.norm1(ref), sr[0], sr[1])], dim=1)
    return attn_in, blk.self_attn.project_q(attn_in, (cos, sin))


def stage_project_kv(blk: DiTBlock, attn_in: torch.Tensor, cos: torch.Tensor,
                     sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """K and V of a self-attention input: this chunk's, or the anchor's cached one."""
    return blk.self_attn.project_kv(attn_in, (cos, sin))


def stage_cross_in(blk: DiTBlock, x: torch.Tensor, attn_out: torch.Tensor,
                   t_mod: torch.Tensor, t0_mod: torch.Tensor, context: torch.Tensor,
                   n_video: int) -> tuple[torch.Tensor, torch.Tensor, CrossProjections]:
    """The self-attention's output projection and residual; the cross-attention's inputs.

    Returns the video and reference tokens after self-attention, and the cross-attention
    projections of the video tokens (reference tokens skip cross-attention).
    """
    sv, sr = _mods(blk, t_mod, t0_mod)
    y = blk.self_attn.o(attn_out).float()
    video = (x[:, :n_video].float() + y[:, :n_video] * sv[2]).to(x.dtype)
    ref = (x[:, n_video:].float() + y[:, n_video:] * sr[2]).to(x.dtype)
    return video, ref, blk.cross_attn.project(blk.norm3(video), context)


def stage_cross_out(blk: DiTBlock, video: torch.Tensor, cross_text: torch.Tensor,
                    cross_image: torch.Tensor | None) -> torch.Tensor:
    """The video tokens after the cross-attention's output projection and residual."""
    out = cross_text if cross_image is None else cross_text + cross_image
    return video + blk.cross_attn.o(out)


def stage_ffn(blk: DiTBlock, video: torch.Tensor, ref: torch.Tensor, t_mod: torch.Tensor,
              t0_mod: torch.Tensor) -> torch.Tensor:
    """The FFN and its residual: the block's output tokens (video, then reference)."""
    sv, sr = _mods(blk, t_mod, t0_mod)
    ffn_in = torch.cat([modulate(blk.norm2(video), sv[3], sv[4]),
                        modulate(blk.norm2(ref), sr[3], sr[4])], dim=1)
    y = blk.ffn(ffn_in).float()
    n_video = video.shape[1]
    video = (video.float() + y[:, :n_video] * sv[5]).to(video.dtype)
    ref = (ref.float() + y[:, n_video:] * sr[5]).to(ref.dtype)
    return torch.cat([video, ref], dim=1)


@dataclass(frozen=True)
class BlockStages:
    """The tensor functions of a block, in order: eager (`EAGER_STAGES`) or compiled."""

    attn_in: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    project_kv: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    cross_in: Callable[..., tuple[torch.Tensor, torch.Tensor, CrossProjections]]
    cross_out: Callable[..., torch.Tensor]
    ffn: Callable[..., torch.Tensor]
    compiled: bool = False


EAGER_STAGES = BlockStages(stage_attn_in, stage_project_kv, stage_cross_in, stage_cross_out,
                           stage_ffn)


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
        self.stages = EAGER_STAGES

    def forward(self, x: torch.Tensor, context: torch.Tensor, t_mod: torch.Tensor,
                t0_mod: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], n_video: int,
                block: int, hook: AttentionHook | None) -> torch.Tensor:
        # Each large tensor is dropped as soon as the next stage has it, so the block holds
        # no more at once than a single-function forward would.
        st, (cos, sin) = self.stages, rope
        attn_in, q = st.attn_in(self, x, t_mod, t0_mod, cos, sin, n_video)
        k, v = st.project_kv(self, attn_in, cos, sin)
        out = None
        if hook is not None:
            out = hook.self_attention(block, q, k, v, n_video, attn_in,
                                      lambda t: st.project_kv(self, t, cos, sin))
        del attn_in
        if out is None:
            out = attention(q, k, v)
        del q, k, v
        video, ref, (q, k, v, k_img, v_img) = st.cross_in(self, x, out, t_mod, t0_mod,
                                                            context, n_video)
        del out
        if hook is not None and hook.wants_keyword_map(block):
            hook.keyword_map(block, q, k)
        cross_image = None if k_img is None or v_img is None else attention(q, k_img, v_img)
        video = st.cross_out(self, video, attention(q, k, v), cross_image)
        del q, k, v, k_img, v_img, cross_image
        return st.ffn(self, video, ref, t_mod, t0_mod)


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

    @property
    def compiled(self) -> bool:
        """Whether the blocks run compiled stages (`engine.compiler.compile_blocks`)."""
        return all(cast(DiTBlock, b).stages.compiled for b in self.blocks)

    def set_stages(self, stages: BlockStages) -> None:
        """Run every block with ``stages`` (eager, or compiled by engine/compiler.py)."""
        for b in self.blocks:
            cast(DiTBlock, b).stages = stages

    def forward(self, latents: torch.Tensor, cond: torch.Tensor, hand: torch.Tensor | None,
                ref: torch.Tensor, context: torch.Tensor, timestep: torch.Tensor,
                hook: AttentionHook | None = None) -> torch.Tensor:
        """Predict the flow for ``latents`` (1, 16, F, H, W).

        cond: mask (4) + pose latents (16) channels, same F, H, W; hand: hand
        latents (1, 16, F, H, W); ref: reference latent (1, 16, 1, H, W);
        context: the output of ``embed_context``; timestep: (1,) in [0, 1000].
        """
        tokens, grid, n_video, t, (t_mod, t0_mod), rope, context = self._tokens(
            latents, cond, hand, ref, context, timestep)
        for i, block in enumerate(self.blocks):
            tokens = block(tokens, context, t_mod, t0_mod, rope, n_video, i, hook)
        if hook is not None:
            hook.end_forward()
        out = self.head(tokens[:, :n_video], t)
        return self._unpatchify(out, grid)

    def warm_up(self, latents: torch.Tensor, cond: torch.Tensor, hand: torch.Tensor | None,
                ref: torch.Tensor, context: torch.Tensor, timestep: torch.Tensor) -> None:
        """Run the first block once at these shapes, no hook, output dropped.

        Every block runs the same stage code, so with compiled stages this compiles
        (or loads from the compiler's cache) what the whole forward needs, at the cost
        of one block.
        """
        tokens, _, n_video, _, (t_mod, t0_mod), rope, context = self._tokens(
            latents, cond, hand, ref, context, timestep)
        self.blocks[0](tokens, context, t_mod, t0_mod, rope, n_video, 0, None)

    def _tokens(self, latents: torch.Tensor, cond: torch.Tensor, hand: torch.Tensor | None,
                ref: torch.Tensor, context: torch.Tensor, timestep: torch.Tensor
                ) -> tuple[torch.Tensor, tuple[int, int, int], int, torch.Tensor,
                           tuple[torch.Tensor, torch.Tensor],
                           tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """What the blocks take: tokens (video, then reference), the video grid, the
        number of video tokens, the time embedding, the time modulations (t, 0), the RoPE
        tables and the context in the tokens' dtype."""
        dtype = self.patch_embedding.weight.dtype
        x = self.patch_embedding(torch.cat([latents, cond], dim=1).to(dtype))
        grid = cast(tuple[int, int, int], tuple(x.shape[2:]))
        x = x.flatten(2).transpose(1, 2)
        if self.cfg.use_hand:
            if hand is None:
                raise ValueError("this DiT uses hand latents: pass them")
            x = x + self.hand_patch_embedding(hand.to(dtype)).flatten(2).transpose(1, 2)
        r = self.ref_patch_embedding(ref.to(dtype))
        ref_grid = cast(tuple[int, int], tuple(r.shape[3:]))
        r = r.flatten(2).transpose(1, 2)
        n_video = x.shape[1]
        tokens = torch.cat([x, r], dim=1)

        t, t_mod = self._time(timestep)
        _, t0_mod = self._time(torch.zeros_like(timestep))
        rope = self._rope(grid, ref_grid, tokens.device)
        return tokens, grid, n_video, t, (t_mod, t0_mod), rope, context.to(tokens.dtype)

    def _unpatchify(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        f, h, w = grid
        pf, ph, pw = self.cfg.patch_size
        c = self.cfg.out_dim
        x = x.reshape(x.shape[0], f, h, w, pf, ph, pw, c)
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.reshape(x.shape[0], c, f * pf, h * ph, w * pw)
