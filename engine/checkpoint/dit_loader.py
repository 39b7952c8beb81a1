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
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from engine.atomic import atomic_path, atomic_write_json
from engine.models.dit import DiTConfig, PoseGenDiT

from .layout import CheckpointError, check_share_blocks  # noqa: F401  (re-exported)
from .mapped import open_mapped, release_pages
from .staging import ParallelCopy

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


def _shards(folder: Path) -> list[Path]:
    shards = sorted(folder.glob("*.bin"))
    if not shards:
        raise CheckpointError(f"{folder}: no *.bin state dicts found; copy the release's "
                              "DiT shards into this folder")
    return shards


def _read_shard(shard: Path) -> tuple[dict[str, torch.Tensor], bool]:
    """The shard's tensors, memory-mapped where the format allows, and whether they are."""
    try:
        part, mapped = open_mapped(shard)
    except Exception as e:  # torch raises several types for torn or foreign files
        raise CheckpointError(f"{shard}: not a readable state dict ({type(e).__name__}: "
                              f"{e}); the file may be truncated, copy it again") from None
    if not isinstance(part, dict):
        raise CheckpointError(f"{shard}: expected a dict of tensors, got {type(part)}")
    return part, mapped


def read_shards(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the folder's ``*.bin`` shards as stored (release keys)."""
    merged: dict[str, torch.Tensor] = {}
    for shard in _shards(folder):
        merged.update(_read_shard(shard)[0])
    return merged


def merge_pair(w: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
               alpha: float = 1.0) -> torch.Tensor:
    """``w + alpha * (B @ A)``, the release's arithmetic, on ``w``'s device.

    The pair is cast to the base weight's dtype and multiplied there (a 1x1 conv's pair
    squeezed to 2-D and back), and the sum is taken in that dtype: a bf16 checkpoint
    merges in bf16. Computed in place in the product's buffer (an IEEE sum is the same
    either way round, and a product by 1.0 is exact), so a merge allocates one tensor.
    """
    a2 = a.to(device=w.device, dtype=w.dtype).reshape(a.shape[0], -1)
    b2 = b.to(device=w.device, dtype=w.dtype).reshape(b.shape[0], -1)
    out = torch.mm(b2, a2)
    if alpha != 1.0:
        out.mul_(alpha)
    return out.add_(w.reshape(out.shape)).reshape(w.shape)


def merge_lora(raw: dict[str, torch.Tensor], alpha: float = 1.0) -> dict[str, torch.Tensor]:
    """Strip `pipe.dit.`, drop `.base_layer`, fold LoRA pairs into their weights."""
    plain: dict[str, torch.Tensor] = {}
    lora: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in raw.items():
        name, slot = _release_name(key)
        if slot:
            lora.setdefault(name, {})[slot] = value
        else:
            plain[name] = value
    _check_lora_complete(plain, lora)
    for layer, pair in lora.items():
        plain[f"{layer}.weight"] = merge_pair(plain[f"{layer}.weight"], pair["A"], pair["B"],
                                              alpha)
    return plain


def _release_name(key: str) -> tuple[str, str]:
    """(module name, "") for a weight, (layer name, "A" or "B") for a LoRA half."""
    name = key[len(KEY_PREFIX):] if key.startswith(KEY_PREFIX) else key
    if "lora" in name:
        for suffix, slot in ((LORA_A, "A"), (LORA_B, "B")):
            if name.endswith(suffix):
                return name[: -len(suffix)], slot
        raise CheckpointError(f"unexpected LoRA key {key!r}: expected names ending in "
                              f"{LORA_A} or {LORA_B}")
    return name.replace(".base_layer.", "."), ""


class _StreamingLoad:
    """Takes a folder's tensors one at a time and puts each where the model will use it.

    A weight goes straight from the (memory-mapped) file to its place: the compute device
    for resident parameters, ``host`` memory (pinned, for streaming) for the others.
    LoRA layers are merged on the compute device as soon as the base weight and both
    halves are in, then cast to the model's dtype; nothing of a layer is copied twice
    through host memory and the file's pages are handed back as they are used.
    """

    def __init__(self, device: torch.device, dtype: torch.dtype, alpha: float,
                 resident: Callable[[str], bool], host: Callable[..., torch.Tensor],
                 copier: ParallelCopy) -> None:
        self.device, self.dtype, self.alpha = device, dtype, alpha
        self.resident, self.host, self.copier = resident, host, copier
        self.state: dict[str, torch.Tensor] = {}
        self.pending: dict[str, tuple[torch.Tensor, bool]] = {}  # LoRA base, still in the file
        self.lora: dict[str, dict[str, torch.Tensor]] = {}  # halves, on the compute device
        self.merge_seconds = 0.0
        self.sync = ((lambda: torch.cuda.synchronize(device)) if device.type == "cuda"
                     else (lambda: None))

    def add(self, key: str, src: torch.Tensor, mapped: bool) -> None:
        name, slot = _release_name(key)
        if slot:
            self.lora.setdefault(name, {})[slot] = self._on_device(src, mapped)
            self._merge_ready(name)
        elif name.endswith(".weight") and (".base_layer." in key or name[:-7] in self.lora):
            self.pending[name[:-7]] = (src, mapped)
            self._merge_ready(name[:-7])
        else:
            self._place(name, src, mapped)

    def finish(self) -> dict[str, torch.Tensor]:
        for layer, pair in self.lora.items():
            if set(pair) != {"A", "B"}:
                raise CheckpointError(f"LoRA layer {layer!r} has only lora_{next(iter(pair))}; "
                                      "both lora_A and lora_B are needed")
        for layer in list(self.lora):
            if layer not in self.pending and f"{layer}.weight" in self.state:
                # A plain (not ``base_layer``) weight that came before its pair: merged
                # where it was placed, in the model's dtype.
                pair = self.lora.pop(layer)
                placed = self.state[f"{layer}.weight"]
                merged = merge_pair(placed.to(self.device), pair["A"], pair["B"], self.alpha)
                placed.copy_(merged)
        if self.lora:
            layer = next(iter(self.lora))
            raise CheckpointError(f"LoRA layer {layer!r} has no base weight {layer}.weight")
        for layer, (src, mapped) in self.pending.items():  # a base_layer without LoRA
            self._place(f"{layer}.weight", src, mapped)
        self.pending.clear()
        self.sync()
        return self.state

    def _on_device(self, src: torch.Tensor, mapped: bool) -> torch.Tensor:
        """``src`` on the compute device in its own dtype (on a CPU: the file's view)."""
        if self.device.type == "cpu":
            return src
        return self.copier.to(src, self.device, mapped)

    def _merge_ready(self, layer: str) -> None:
        pair = self.lora.get(layer)
        if layer not in self.pending or pair is None or len(pair) != 2:
            return
        src, mapped = self.pending.pop(layer)
        del self.lora[layer]
        w = self._on_device(src, mapped)
        t0 = time.perf_counter()
        merged = merge_pair(w, pair["A"], pair["B"], self.alpha)
        del w
        self.sync()
        self.merge_seconds += time.perf_counter() - t0
        if mapped and self.device.type == "cpu":
            release_pages(src)
        self._keep(f"{layer}.weight", merged)

    def _keep(self, name: str, t: torch.Tensor) -> None:
        """A computed tensor (merged) into its place, in the model's dtype."""
        t = t.to(self.dtype) if t.is_floating_point() else t
        if self.resident(name):
            self.state[name] = t
            return
        dst = self.host(t.shape, t.dtype)
        dst.copy_(t)
        self.state[name] = dst

    def _place(self, name: str, src: torch.Tensor, mapped: bool) -> None:
        """A tensor of the file into its place, in the model's dtype."""
        dtype = self.dtype if src.is_floating_point() else src.dtype
        if not self.resident(name):
            dst = self.host(src.shape, dtype)
        elif self.device.type == "cpu":
            dst = torch.empty(src.shape, dtype=dtype)
        else:
            self.state[name] = self.copier.to(src, self.device, mapped).to(dtype)
            return
        if dst.dtype == src.dtype:
            self.copier.copy_into(dst, src, mapped)
        else:
            dst.copy_(src)
            if mapped:
                release_pages(src)
        self.state[name] = dst


def _check_lora_complete(plain: dict[str, torch.Tensor],
                         lora: dict[str, dict[str, torch.Tensor]]) -> None:
    for layer, pair in lora.items():
        if set(pair) != {"A", "B"}:
            raise CheckpointError(f"LoRA layer {layer!r} has only lora_{next(iter(pair))}; "
                                  "both lora_A and lora_B are needed")
        if f"{layer}.weight" not in plain:
            raise CheckpointError(f"LoRA layer {layer!r} has no base weight {layer}.weight")


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
             seconds: dict[str, float] | None = None, *,
             resident: Callable[[str], bool] | None = None,
             host: Callable[..., torch.Tensor] | None = None,
             copier: ParallelCopy | None = None) -> PoseGenDiT:
    """Build the DiT of a release folder with every weight already where it will live.

    ``device``: where the model computes. ``resident(name)``: whether parameter ``name``
    lives there (default: all); the others go to ``host(shape, dtype)`` (default: plain
    CPU tensors; pinned views for a streamed DiT). ``seconds`` gets the time of each
    loading step: ``dit_load`` (reading, copying and merging), ``dit_merge`` (of that,
    the LoRA merges) and ``dit_build``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: DiT folder not found; expected it in the checkpoint "
                              "dir (720p-81f-base/ or 720p-81f-cond/)")
    seconds = {} if seconds is None else seconds
    device = torch.device(device)
    cfg = read_config(folder)
    shards = _shards(folder)
    own_copier = copier is None
    copier = copier or ParallelCopy()
    load = _StreamingLoad(device, dtype, 1.0, resident or (lambda name: True),
                          host or (lambda shape, dt: torch.empty(shape, dtype=dt)), copier)
    t0 = time.perf_counter()
    try:
        for shard in shards:
            part, mapped = _read_shard(shard)
            while part:
                key, value = part.popitem()
                load.add(key, value, mapped)
            del part
        state = load.finish()
    finally:
        if own_copier:
            copier.close()
    t1 = time.perf_counter()
    seconds["dit_load"] = seconds.get("dit_load", 0.0) + t1 - t0
    seconds["dit_merge"] = seconds.get("dit_merge", 0.0) + load.merge_seconds
    with torch.device("meta"):
        model = PoseGenDiT(cfg)
    emb_pos = state.get("img_emb.emb_pos")
    if emb_pos is not None and hasattr(model, "img_emb"):
        # Checkpoints may store more learned image positions than one image uses.
        model.img_emb.emb_pos = torch.nn.Parameter(torch.empty_like(emb_pos, device="meta"))
    _check_keys(model, state, folder)
    model.load_state_dict(state, assign=True, strict=True)
    model = model.eval().requires_grad_(False)
    seconds["dit_build"] = seconds.get("dit_build", 0.0) + time.perf_counter() - t1
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
