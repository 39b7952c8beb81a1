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
from collections.abc import Iterable
from pathlib import Path

import torch

from engine.atomic import atomic_path, atomic_write_json
from engine.models.dit import DiTConfig, PoseGenDiT

from .layout import CheckpointError

KEY_PREFIX = "pipe.dit."
LORA_A = ".lora_A.default.weight"
LORA_B = ".lora_B.default.weight"
CONFIG_FILE = "model_config.json"


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


def read_shards(folder: Path) -> dict[str, torch.Tensor]:
    shards = sorted(folder.glob("*.bin"))
    if not shards:
        raise CheckpointError(f"{folder}: no *.bin state dicts found; copy the release's "
                              "DiT shards into this folder")
    merged: dict[str, torch.Tensor] = {}
    for shard in shards:
        try:
            part = torch.load(shard, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises several types for torn or foreign files
            raise CheckpointError(f"{shard}: not a readable state dict ({type(e).__name__}: "
                                  f"{e}); the file may be truncated, copy it again") from None
        if not isinstance(part, dict):
            raise CheckpointError(f"{shard}: expected a dict of tensors, got {type(part)}")
        merged.update(part)
    return merged


def merge_lora(raw: dict[str, torch.Tensor], alpha: float = 1.0) -> dict[str, torch.Tensor]:
    """Strip `pipe.dit.`, drop `.base_layer`, fold LoRA pairs into their weights."""
    plain: dict[str, torch.Tensor] = {}
    lora: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in raw.items():
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
        plain[name.replace(".base_layer.", ".")] = value
    for layer, pair in lora.items():
        if set(pair) != {"A", "B"}:
            raise CheckpointError(f"LoRA layer {layer!r} has only lora_{next(iter(pair))}; "
                                  "both lora_A and lora_B are needed")
        target = f"{layer}.weight"
        if target not in plain:
            raise CheckpointError(f"LoRA layer {layer!r} has no base weight {target!r}")
        w = plain[target]
        a = pair["A"].float().reshape(pair["A"].shape[0], -1)
        b = pair["B"].float().reshape(pair["B"].shape[0], -1)
        delta = (b @ a).reshape(w.shape)  # 1x1x1 conv LoRA: squeeze, multiply, unsqueeze
        plain[target] = (w.float() + alpha * delta).to(w.dtype)
    return plain


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
    raw = read_shards(folder)
    t1 = time.perf_counter()
    state = merge_lora(raw)
    del raw
    t2 = time.perf_counter()
    seconds["dit_read"] = seconds.get("dit_read", 0.0) + t1 - t0
    seconds["dit_lora_merge"] = seconds.get("dit_lora_merge", 0.0) + t2 - t1
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
