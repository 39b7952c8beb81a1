"""Load (and, for the tiny checkpoint, write) the release's DiT folders.

A folder such as `720p-81f-base/` holds `model_config.json` (the DiT's
constructor keywords) and one or more `*.bin` state dicts whose keys start with
`pipe.dit.`. Layers finetuned with LoRA appear as `<layer>.base_layer.weight`
plus `<layer>.lora_A.default.weight` / `<layer>.lora_B.default.weight`; they are
merged into plain weights, `W += alpha * (B @ A)`, before loading.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from engine.atomic import atomic_path, atomic_write_json
from engine.models.dit import DiTConfig, PoseGenDiT

from .layout import CheckpointError
from .mapped import load_mapped

KEY_PREFIX = "pipe.dit."
LORA_A = ".lora_A.default.weight"
LORA_B = ".lora_B.default.weight"
CONFIG_FILE = "model_config.json"
# Memory-map shards only when the biggest is at most 1/4 of the folder: the loader then
# holds about the weights plus one shard (measured in bench/load_memory.py).
MMAP_MAX_SHARD_FRACTION = 4


def read_config(folder: Path) -> DiTConfig:
    path = folder / CONFIG_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; a DiT folder needs model_config.json with "
                              "the DiT's constructor keywords (dim, num_heads, ...)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable JSON ({e}); restore it from the release"
                              ) from None
    try:
        cfg = DiTConfig.from_dict(raw)
        cfg.validate()
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: {e}") from None
    return cfg


def _shards(folder: Path) -> list[Path]:
    shards = sorted(folder.glob("*.bin"))
    if not shards:
        raise CheckpointError(f"{folder}: no *.bin state dicts found; copy the release's "
                              "DiT shards into this folder")
    return shards


def _read_shard(shard: Path, mmap: bool = True) -> dict[str, torch.Tensor]:
    try:
        part = load_mapped(shard, mmap=mmap)
    except Exception as e:  # torch raises several types for torn or foreign files
        raise CheckpointError(f"{shard}: not a readable state dict ({type(e).__name__}: "
                              f"{e}); the file may be truncated, copy it again") from None
    if not isinstance(part, dict):
        raise CheckpointError(f"{shard}: expected a dict of tensors, got {type(part)}")
    return part


def read_shards(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the folder's ``*.bin`` shards, memory-mapped where the format allows."""
    merged: dict[str, torch.Tensor] = {}
    for shard in _shards(folder):
        merged.update(_read_shard(shard))
    return merged


def read_merged(folder: Path, alpha: float = 1.0) -> dict[str, torch.Tensor]:
    """The folder's weights with LoRA folded in, holding about one copy of them.

    Shards are read one at a time and a layer is merged as soon as its base weight and
    both LoRA tensors have been read (the replaced base weight is freed at once).
    Several small shards are memory-mapped, and whatever of a shard stays unmerged is
    copied out of its mapping before the next one, so the mapping and the file pages it
    keeps resident go away: peak about the weights plus one shard. A folder of a few
    big shards (the release's single ``pytorch_model.bin``) is read plainly instead: a
    mapping of the whole file would stay resident beside the merged copies.
    """
    shards = _shards(folder)
    sizes = [f.stat().st_size for f in shards]
    mmap = max(sizes) * MMAP_MAX_SHARD_FRACTION <= sum(sizes)
    plain: dict[str, torch.Tensor] = {}
    lora: dict[str, dict[str, torch.Tensor]] = {}
    for shard in shards:
        part = _read_shard(shard, mmap)
        fresh = _split(_drain(part), plain, lora)
        merged = _fold_ready(plain, lora, alpha)
        if mmap:
            for name in fresh - merged:  # still views of the shard's mapping
                plain[name] = plain[name].clone()
            for pair in lora.values():
                for slot, t in pair.items():
                    pair[slot] = t.clone()
        del part
    _fold_ready(plain, lora, alpha)
    _check_lora_complete(plain, lora)
    return plain


def merge_lora(raw: dict[str, torch.Tensor], alpha: float = 1.0,
               consume: bool = False) -> dict[str, torch.Tensor]:
    """Strip `pipe.dit.`, drop `.base_layer`, fold LoRA pairs into their weights.

    The release's arithmetic: the pair is cast to the base weight's dtype, multiplied
    there (``alpha * B @ A``, a 1x1 conv's pair squeezed to 2-D and back) and added in
    that dtype, so a bf16 checkpoint merges in bf16. ``consume`` empties ``raw`` while
    merging, so a replaced base weight is freed at once rather than kept beside its
    merged copy.
    """
    plain: dict[str, torch.Tensor] = {}
    lora: dict[str, dict[str, torch.Tensor]] = {}
    _split(_drain(raw) if consume else iter(raw.items()), plain, lora)
    _check_lora_complete(plain, lora)
    _fold_ready(plain, lora, alpha)
    return plain


def _split(items: Iterator[tuple[str, torch.Tensor]], plain: dict[str, torch.Tensor],
           lora: dict[str, dict[str, torch.Tensor]]) -> set[str]:
    """Sort release keys into plain weights and LoRA halves; returns the new plain names."""
    fresh = set()
    for key, value in items:
        name = key[len(KEY_PREFIX):] if key.startswith(KEY_PREFIX) else key
        if "lora" in name:
            for suffix, slot in ((LORA_A, "A"), (LORA_B, "B")):
                if name.endswith(suffix):
                    lora.setdefault(name[: -len(suffix)], {})[slot] = value
                    break
            else:
                raise CheckpointError(f"unexpected LoRA key {key!r}: expected names ending in "
                                      f"{LORA_A} or {LORA_B}")
            continue
        name = name.replace(".base_layer.", ".")
        plain[name] = value
        fresh.add(name)
    return fresh


def _fold_ready(plain: dict[str, torch.Tensor], lora: dict[str, dict[str, torch.Tensor]],
                alpha: float) -> set[str]:
    """Merge every layer whose base weight and both halves are present; their names."""
    done = set()
    for layer in [n for n, pair in lora.items() if len(pair) == 2 and f"{n}.weight" in plain]:
        pair = lora.pop(layer)
        target = f"{layer}.weight"
        w = plain[target]
        a = pair["A"].to(w.dtype).reshape(pair["A"].shape[0], -1)
        b = pair["B"].to(w.dtype).reshape(pair["B"].shape[0], -1)
        plain[target] = w + alpha * torch.mm(b, a).reshape(w.shape)
        done.add(target)
    return done


def _check_lora_complete(plain: dict[str, torch.Tensor],
                         lora: dict[str, dict[str, torch.Tensor]]) -> None:
    for layer, pair in lora.items():
        if set(pair) != {"A", "B"}:
            raise CheckpointError(f"LoRA layer {layer!r} has only lora_{next(iter(pair))}; "
                                  "both lora_A and lora_B are needed")
        if f"{layer}.weight" not in plain:
            raise CheckpointError(f"LoRA layer {layer!r} has no base weight {layer}.weight")


def _drain(d: dict[str, torch.Tensor]) -> Iterator[tuple[str, torch.Tensor]]:
    while d:
        yield d.popitem()


def _check_keys(model: PoseGenDiT, state: dict[str, torch.Tensor], folder: Path) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. " + ", ".join(
            f"{k} {list(expected[k])}" for k in missing[:4]) + ")")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:4])})")
    if wrong:
        problems.append(f"{len(wrong)} with wrong shapes (e.g. " + ", ".join(
            f"{k}: file {list(state[k].shape)}, expected {list(expected[k])}"
            for k in wrong[:4]) + ")")
    if problems:
        raise CheckpointError(f"{folder}: state dict does not match {CONFIG_FILE}: "
                              + "; ".join(problems)
                              + ". Check that the config and the *.bin files belong together.")


def load_dit(folder: str | Path, device: str | torch.device = "cpu",
             dtype: torch.dtype = torch.float32,
             seconds: dict[str, float] | None = None) -> PoseGenDiT:
    """Build the DiT of a release folder; ``seconds`` gets the time of each loading step."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: DiT folder not found; expected it in the checkpoint "
                              "dir (720p-81f-base/ or 720p-81f-cond/)")
    seconds = {} if seconds is None else seconds
    cfg = read_config(folder)
    t0 = time.perf_counter()
    state = read_merged(folder)
    t2 = time.perf_counter()
    # Reading and merging interleave (shard by shard): one figure for both.
    seconds["dit_read_merge"] = seconds.get("dit_read_merge", 0.0) + t2 - t0
    with torch.device("meta"):
        model = PoseGenDiT(cfg)
    emb_pos = state.get("img_emb.emb_pos")
    if emb_pos is not None and hasattr(model, "img_emb"):
        # Checkpoints may store more learned image positions than one image uses.
        model.img_emb.emb_pos = torch.nn.Parameter(torch.empty_like(emb_pos, device="meta"))
    _check_keys(model, state, folder)
    model.load_state_dict(state, assign=True, strict=True)
    model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    seconds["dit_build"] = seconds.get("dit_build", 0.0) + time.perf_counter() - t2
    return model


def default_lora_targets(cfg: DiTConfig) -> list[str]:
    """The layers the written checkpoints wrap with LoRA: attention and FFN linears.

    Only weights the release's own merge can fold in (2-D linear weights; it also takes
    1x1 conv weights, which it squeezes to 2-D): `hand_patch_embedding.1` is a 1x1x1
    Conv3d with a 5-D weight, which the release cannot merge (ENGINE-SPEC section 10),
    so it stays a plain weight. The engine's loader still merges such pairs.
    """
    targets = []
    for i in range(cfg.num_layers):
        for attn in ("self_attn", "cross_attn"):
            targets += [f"blocks.{i}.{attn}.{p}" for p in ("q", "k", "v", "o")]
        targets += [f"blocks.{i}.ffn.0", f"blocks.{i}.ffn.2"]
    return targets


def split_lora(state: dict[str, torch.Tensor], targets: Iterable[str], rank: int,
               generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Release-format keys for ``state``: targets become base_layer + a random LoRA pair.

    The base weight is stored as ``W - B @ A`` so that merging gives back ``W``.
    """
    out: dict[str, torch.Tensor] = {}
    targets = set(targets)
    for key, value in state.items():
        layer, _, leaf = key.rpartition(".")
        if layer not in targets:
            out[KEY_PREFIX + key] = value
            continue
        if leaf == "weight":
            w = value.float()
            a = torch.randn(rank, w[0].numel(), generator=generator) * 0.02
            b = torch.randn(w.shape[0], rank, generator=generator) * 0.02
            base = w - (b @ a).reshape(w.shape)
            out[f"{KEY_PREFIX}{layer}.base_layer.weight"] = base.to(value.dtype)
            a_shape = (rank, *w.shape[1:2], *([1] * (w.dim() - 2)))
            b_shape = (w.shape[0], rank, *([1] * (w.dim() - 2)))
            out[f"{KEY_PREFIX}{layer}{LORA_A}"] = a.reshape(a_shape).to(value.dtype)
            out[f"{KEY_PREFIX}{layer}{LORA_B}"] = b.reshape(b_shape).to(value.dtype)
        else:
            out[f"{KEY_PREFIX}{layer}.base_layer.{leaf}"] = value
    return out


def write_dit_folder(folder: str | Path, model: PoseGenDiT, *, lora_rank: int = 4,
                     shards: int = 2, seed: int = 0) -> None:
    """Write ``model`` in the release's folder format (config + sharded .bin files)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    release = split_lora(state, default_lora_targets(model.cfg), lora_rank, gen)
    keys = list(release)
    per_shard = -(-len(keys) // shards)
    for n in range(shards):
        part = {k: release[k] for k in keys[n * per_shard:(n + 1) * per_shard]}
        with atomic_path(folder / f"pytorch_model-{n + 1:05d}-of-{shards:05d}.bin") as tmp:
            torch.save(part, tmp)
    atomic_write_json(folder / CONFIG_FILE, model.cfg.to_dict())
