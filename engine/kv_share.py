"""Background sharing between base chunks (spec section 5), as DiT attention hooks.

The anchor chunk records, at share steps: its self-attention input in share
blocks (both CFG passes; K and V are recomputed from it, see engine/kv_cache.py)
and its keyword map in every map block (positive pass). A base chunk, at share
steps and in share blocks, lets its background tokens attend to the anchor's
K/V; the foreground, where the person is, keeps its own attention.
The foreground is the union of Otsu masks of the anchor's and this chunk's
averaged keyword maps. The negative pass reuses the positive pass's masks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from engine.cache_io import BlockPrefetcher
from engine.kv_cache import AnchorCache
from engine.models.attention import keyword_map, otsu_foreground, shared_attention, split_rows
from engine.settings import ShareSettings  # noqa: F401  (re-exported)

POSITIVE, NEGATIVE = "pos", "neg"
KVProjection = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
SaveStep = Callable[[torch.Tensor], None]


class _StepHook:
    """Tracks the step and CFG pass the sampler is in."""

    def __init__(self, settings: ShareSettings, keyword_token: int,
                 grid: tuple[int, int, int]) -> None:
        self.settings = settings
        self.keyword_token = keyword_token
        self.grid = grid
        self.step = -1
        self.cfg_pass = POSITIVE

    def begin(self, step: int, cfg_pass: str) -> None:
        self.step, self.cfg_pass = step, cfg_pass

    def end_step(self, save: SaveStep, latents: torch.Tensor) -> None:
        """The sampler's step is final: ``save`` its latents (at once here)."""
        save(latents)

    def drain(self) -> None:
        """Called by the sampler when it stops: every step handed over is saved."""

    @property
    def sharing(self) -> bool:
        return self.settings.share_step(self.step)

    def wants_keyword_map(self, block: int) -> bool:
        return (self.sharing and self.cfg_pass == POSITIVE and self.settings.use_mask
                and block <= self.settings.max_block_idx)

    def _map(self, q_video: torch.Tensor, k_text: torch.Tensor) -> torch.Tensor:
        return keyword_map(q_video, k_text[:, self.keyword_token], self.grid)


class AnchorRecorder(_StepHook):
    def __init__(self, cache: AnchorCache, settings: ShareSettings, keyword_token: int,
                 grid: tuple[int, int, int]) -> None:
        super().__init__(settings, keyword_token, grid)
        self.cache = cache
        self._maps: dict[int, torch.Tensor] = {}

    def self_attention(self, block: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       n_video: int, x: torch.Tensor, project_kv: KVProjection
                       ) -> torch.Tensor | None:
        if self.sharing and self.settings.share_block(block):
            self.cache.save_input(self.step, block, self.cfg_pass, x)
        return None

    def end_step(self, save: SaveStep, latents: torch.Tensor) -> None:
        # Saved once this step's cache files are on disk, while the next step computes:
        # a resumed anchor never starts past a step whose cache is incomplete.
        self.cache.after_writes(save, latents)

    def drain(self) -> None:
        self.cache.flush()

    def keyword_map(self, block: int, q_video: torch.Tensor, k_text: torch.Tensor) -> None:
        self._maps[block] = self._map(q_video, k_text)

    def end_forward(self) -> None:
        if self._maps:
            self.cache.save_maps(self.step, self._maps)
        self._maps = {}


class BaseSharer(_StepHook):
    def __init__(self, cache: AnchorCache, settings: ShareSettings, keyword_token: int,
                 grid: tuple[int, int, int], device: torch.device | str) -> None:
        super().__init__(settings, keyword_token, grid)
        self.cache = cache
        self.device = device
        self._own: dict[int, torch.Tensor] = {}
        self._anchor: dict[int, torch.Tensor] = {}
        self._anchor_step = -1
        # (step, block) -> (own rows, shared rows): made in the positive pass, reused in the
        # negative one, so each costs one host sync per step and block.
        self._rows: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self._fractions: list[torch.Tensor] = []  # read once at the end: no sync per block
        self.prefetcher = BlockPrefetcher(device)

    @property
    def foreground_fraction(self) -> list[float]:
        return [float(f) for f in self._fractions]

    def begin(self, step: int, cfg_pass: str) -> None:
        super().begin(step, cfg_pass)
        if self.sharing:
            b0, b1 = self.settings.blocks
            self.cache.prefetch_inputs(self.prefetcher, step, range(b0, b1), cfg_pass)

    def keyword_map(self, block: int, q_video: torch.Tensor, k_text: torch.Tensor) -> None:
        self._own[block] = self._map(q_video, k_text)

    def _anchor_maps(self) -> dict[int, torch.Tensor]:
        if self._anchor_step != self.step:
            self._anchor = self.cache.load_maps(self.step, self.device)
            self._anchor_step = self.step
        return self._anchor

    def foreground(self, block: int) -> torch.Tensor:
        """Union of the Otsu masks of the averaged anchor and own maps at ``block``.

        The anchor's maps are all known before this forward, so its average
        covers map blocks up to and including ``block``; this chunk's own maps
        exist only for blocks already run (< block). Where none exists yet (a
        share block range starting at 0), the anchor's map is used alone.
        """
        anchor = self._anchor_maps()
        limit = min(block, self.settings.max_block_idx)
        a = [m for b, m in sorted(anchor.items()) if b <= limit]
        if not a:
            a = [anchor[min(anchor)]]
        fg = otsu_foreground(torch.stack(a).mean(0))
        own = [m for b, m in sorted(self._own.items()) if b < block]
        if own:
            fg = fg | otsu_foreground(torch.stack(own).mean(0))
        return fg

    def self_attention(self, block: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       n_video: int, x: torch.Tensor, project_kv: KVProjection
                       ) -> torch.Tensor | None:
        if not (self.sharing and self.settings.share_block(block)):
            return None
        x_anchor = self.prefetcher.get(block)
        if x_anchor.dtype != x.dtype:
            raise ValueError(f"anchor cache holds {x_anchor.dtype} tensors, this run computes "
                             f"in {x.dtype}; generate the anchor again with the same --dtype")
        k_a, v_a = project_kv(x_anchor)
        del x_anchor
        rows = None
        if self.settings.use_mask:
            key = (self.step, block)
            if self.cfg_pass == POSITIVE or key not in self._rows:
                fg = self.foreground(block)
                self._fractions.append(fg.float().mean())
                self._rows[key] = split_rows(fg, q.shape[1], q.device)
            rows = self._rows[key]
        return shared_attention(q, k, v, k_a, v_a, rows)

    def end_forward(self) -> None:
        self._own = {}
        self.prefetcher.reset()
        if self.cfg_pass == NEGATIVE:
            self._rows = {k: m for k, m in self._rows.items() if k[0] > self.step}
