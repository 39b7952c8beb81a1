"""On-disk cache of what base chunks read from the anchor chunk.

Per share step and block, one file per CFG pass: the anchor's self-attention
*input* (video + reference tokens, after norm and modulation). A base chunk
recomputes the anchor's K and V from it with the same projections, norms and
RoPE, which gives bit for bit the tensors the anchor attended with (same DiT,
same shapes, same kernels) from half the bytes: K and V are two tensors of that
size, the input is one. Per share step: the anchor's keyword maps, one (f, h, w)
map per map block. Nothing else is kept (the release saves K and V, and every
block's full cross-attention q and k).

Files are safetensors written atomically; `manifest.json` records the settings
that produced them, so a cache made under other settings is refused with a
message that names what changed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from engine.atomic import atomic_write_json
from engine.cache_io import AsyncTensorWriter, BlockPrefetcher
from engine.errors import CacheMismatchError  # noqa: F401  (re-exported)
from engine.tensor_file import read_tensor, write_tensor_file
from engine.workspace import ANCHOR_MANIFEST as MANIFEST

FORMAT = 2  # 1: K and V per block; 2: the self-attention input per block
INPUT = "x"


def describe_changes(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(set(old) | set(new))
    changes = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
    return "; ".join(changes)


class AnchorCache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.writer = AsyncTensorWriter()

    # -- manifest -------------------------------------------------------------
    def manifest(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.root / MANIFEST).read_text())
        except FileNotFoundError:
            return None

    def start(self, settings: dict[str, Any]) -> None:
        """Begin (or continue) writing a cache for ``settings``.

        A cache from other settings is stale: its files are removed so no base
        chunk can ever read them.
        """
        current = self.manifest()
        if (current is not None and current.get("settings") == settings
                and current.get("format") == FORMAT):
            return
        self.clear()
        atomic_write_json(self.root / MANIFEST,
                          {"format": FORMAT, "settings": settings, "complete": False})

    def finish(self) -> None:
        self.flush()
        m = self.manifest() or {}
        m["complete"] = True
        m["files"] = {p.name: p.stat().st_size for p in sorted(self.root.glob("*.safetensors"))}
        atomic_write_json(self.root / MANIFEST, m)

    def check(self, settings: dict[str, Any]) -> None:
        """Raise unless a complete cache for exactly ``settings`` is on disk."""
        m = self.manifest()
        if m is None or not m.get("complete"):
            raise CacheMismatchError(
                f"{self.root}: no complete anchor cache; the anchor chunk must finish first "
                "(re-run the same command to resume it)")
        if m.get("format") != FORMAT:
            raise CacheMismatchError(
                f"{self.root}: anchor cache is in format {m.get('format')}, this version reads "
                f"format {FORMAT}; the anchor chunk must be generated again "
                "(posegen retry SESSION --chunk ANCHOR, or --restart)")
        if m.get("settings") != settings:
            raise CacheMismatchError(
                f"{self.root}: anchor cache was made with other settings "
                f"({describe_changes(m.get('settings', {}), settings)}); "
                "the anchor chunk must be generated again for these settings")

    def clear(self) -> None:
        if self.root.exists():
            for p in self.root.iterdir():
                if p.is_file():
                    p.unlink()
        self.root.mkdir(parents=True, exist_ok=True)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob("*") if p.is_file())

    # -- tensors --------------------------------------------------------------
    def maps_path(self, step: int) -> Path:
        return self.root / f"maps_s{step:03d}.safetensors"

    def input_path(self, step: int, block: int, cfg_pass: str) -> Path:
        return self.root / f"x_s{step:03d}_b{block:03d}_{cfg_pass}.safetensors"

    def save_input(self, step: int, block: int, cfg_pass: str, x: torch.Tensor) -> None:
        """Queue the anchor's self-attention input for writing (see ``flush``)."""
        self.writer.submit(self.input_path(step, block, cfg_pass), INPUT, x)

    def after_writes(self, action: Callable[[torch.Tensor], None], tensor: torch.Tensor
                     ) -> None:
        """Call ``action`` with a host copy of ``tensor`` once every tensor queued so far
        is on disk (from the writer's thread; see ``AsyncTensorWriter.after``)."""
        self.writer.after(action, tensor)

    def flush(self) -> None:
        """Wait until every queued tensor is on disk."""
        self.writer.flush()

    def load_input(self, step: int, block: int, cfg_pass: str, device: torch.device | str
                   ) -> torch.Tensor:
        path = self.input_path(step, block, cfg_pass)
        try:
            return read_tensor(path, INPUT).to(device)
        except FileNotFoundError:
            raise self._missing(path) from None

    def prefetch_inputs(self, prefetcher: BlockPrefetcher, step: int, blocks: range,
                        cfg_pass: str) -> None:
        """Start reading one forward's inputs; a missing file raises at ``get``."""
        for b in blocks:
            if not self.input_path(step, b, cfg_pass).exists():
                raise self._missing(self.input_path(step, b, cfg_pass))
        prefetcher.start(blocks, lambda b: self.input_path(step, b, cfg_pass), INPUT)

    @staticmethod
    def _missing(path: Path) -> CacheMismatchError:
        return CacheMismatchError(f"{path}: missing from the anchor cache; generate the anchor "
                                  "chunk again (posegen retry ... or --restart)")

    def save_maps(self, step: int, maps: dict[int, torch.Tensor]) -> None:
        tensors = {f"block_{b}": m.detach().float().cpu() for b, m in maps.items()}
        write_tensor_file(self.maps_path(step), tensors)

    def load_maps(self, step: int, device: torch.device | str) -> dict[int, torch.Tensor]:
        path = self.maps_path(step)
        try:
            t = load_file(str(path), device=str(device))
        except FileNotFoundError:
            raise CacheMismatchError(f"{path}: missing from the anchor cache; generate the "
                                     "anchor chunk again") from None
        return {int(k.split("_")[1]): v for k, v in t.items()}
