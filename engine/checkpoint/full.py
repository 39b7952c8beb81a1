"""`posegen ckpt make-full`: the release's checkpoint layout at the REAL sizes, RANDOM weights.

No machine here can download the PoseGen release, so to exercise the loaders, memory
budgets and speed at full size this writes every file of the layout (ENGINE-SPEC
section 3) with the release's key names and shapes: the Wan2.1 VAE, the umT5-XXL
encoder and a (locally trained, small) tokenizer, the ViT-H/14 CLIP vision tower, and
the two Wan2.1-I2V-14B PoseGen DiT folders with `base_layer` + LoRA pairs. All tensors
are bf16 and random (normal, std 0.02; norm scales 1 + that), deterministic for a seed:
values are drawn in fixed-size chunks, each from its own generator seeded by
(seed, file, key, chunk), so they do not depend on thread count or shard layout.

Memory stays bounded: one tensor file at a time is generated, saved and freed; each DiT
is written as shards of a few blocks (--shard-mb), so the peak is the largest single
file, the umT5 encoder (~11.4 GB at full size), which the loader reads whole anyway.

Every file is written atomically and `make-full.json` records the finished ones (with
their sizes), so an interrupted run resumes where it stopped when run again.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TextIO

import torch

from engine.atomic import atomic_path, atomic_write_json, atomic_write_text
from engine.compat import import_diffsynth_module
from engine.models.dit import DiTConfig, PoseGenDiT
from engine.models.rope import axis_dims
from engine.progress import format_seconds

from .dit_loader import CONFIG_FILE, KEY_PREFIX, LORA_A, LORA_B, default_lora_targets
from .encoders import CLIP_HEAD_DIM, LATENT_CHANNELS
from .full_cli import DEFAULT_SHARD_MB, PRESET_NAMES, SIZE_FLAGS  # noqa: F401
from .layout import (
    BASE_DIT_DIR,
    CLIP_FILE,
    COND_DIT_DIR,
    T5_FILE,
    TOKENIZER_DIR,
    VAE_FILE,
    CheckpointError,
)
from .tiny import TINY_DIT

MANIFEST = "make-full.json"
README_FILE = "README-FULL.txt"
DTYPE = torch.bfloat16
VALUE_STD = 0.02
CHUNK = 1 << 22  # values per independently seeded chunk (fixed: changing it changes values)
T5_HEAD_DIM = 64  # umT5-XXL: 4096 wide, 64 heads
T5_FFN_RATIO = 2.5  # umT5-XXL: 10240 / 4096
T5_BUCKETS = 32
MIN_T5_VOCAB = 256  # the local tokenizer has at most 200 pieces
CLIP_EMBED_DIM = 1024
CLIP_MLP_RATIO = 4
CLIP_TEXT_POSITIONS = 514
# What torch.save adds around the tensor bytes, generously (zip entries, pickle).
TENSOR_OVERHEAD = 1024
FILE_OVERHEAD = 1 << 16

README = """This is a FULL-SIZE posegen checkpoint with RANDOM weights, written by
`posegen ckpt make-full`. It is NOT the PoseGen release: it has the release's file
layout, key names and tensor shapes (Wan2.1 VAE, umT5-XXL encoder, ViT-H/14 CLIP,
two Wan2.1-I2V-14B PoseGen DiT folders with LoRA pairs) in bf16, so the loaders,
memory budgets and speed can be tested at the real size; the videos it makes are
noise, not people. The tokenizer in google/umt5-xxl/ is a small one trained locally.
make-full.json lists the settings and the finished files (a rerun resumes).
"""


class MakeFullError(CheckpointError):
    """make-full cannot start or continue (sizes, disk space, a foreign folder)."""


# ----------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    """The model sizes written; the defaults are the release's."""

    dit_dim: int = 5120
    dit_layers: int = 40
    dit_heads: int = 40
    dit_ffn: int = 13824
    t5_dim: int = 4096  # also the DiT's text_dim
    t5_layers: int = 24
    t5_vocab: int = 256384
    clip_width: int = 1280
    clip_layers: int = 32
    vae_dim: int = 96
    # XLM-RoBERTa-large text tower of the CLIP file (only with --clip-textual)
    clip_text_vocab: int = 250002
    clip_text_dim: int = 1024
    clip_text_layers: int = 24

    def validate(self) -> None:
        problems = [f"{k} must be >= 1, got {v}" for k, v in asdict(self).items() if v < 1]
        if not problems:
            if self.dit_dim % self.dit_heads:
                problems.append(f"--dit-dim {self.dit_dim} is not a multiple of --dit-heads "
                                f"{self.dit_heads}")
            else:
                try:
                    axis_dims(self.dit_dim // self.dit_heads)
                except ValueError as e:
                    problems.append(f"DiT {e}")
            if self.t5_dim % T5_HEAD_DIM:
                problems.append(f"--t5-dim {self.t5_dim} is not a multiple of the umT5 head "
                                f"size {T5_HEAD_DIM}")
            if self.t5_vocab < MIN_T5_VOCAB:
                problems.append(f"--t5-vocab {self.t5_vocab} is below {MIN_T5_VOCAB} (the "
                                "tokenizer's ids must be < the vocab)")
            if self.clip_width % CLIP_HEAD_DIM:
                problems.append(f"--clip-width {self.clip_width} is not a multiple of the CLIP "
                                f"head size {CLIP_HEAD_DIM}")
            if self.clip_text_dim % 16:
                problems.append(f"clip_text_dim {self.clip_text_dim} is not a multiple of 16")
        if problems:
            raise MakeFullError("invalid sizes: " + "; ".join(problems))

    def dit_config(self) -> DiTConfig:
        # Wan2.1-I2V-14B's constants; PoseGen's three switches as the tiny checkpoint has them.
        return replace(TINY_DIT, dim=self.dit_dim, in_dim=36, ffn_dim=self.dit_ffn,
                       out_dim=LATENT_CHANNELS, text_dim=self.t5_dim, freq_dim=256, eps=1e-6,
                       patch_size=(1, 2, 2), num_heads=self.dit_heads,
                       num_layers=self.dit_layers, has_image_input=True,
                       has_image_pos_emb=False)


PRESETS = {
    "full": Sizes(),
    # Same structure (DiT head size 128, umT5 head size 64, CLIP width 1280 = what the
    # DiT's image MLP reads), a few MB in all: for CI.
    "tiny": Sizes(dit_dim=256, dit_layers=2, dit_heads=2, dit_ffn=512, t5_dim=128,
                  t5_layers=2, t5_vocab=512, clip_width=1280, clip_layers=1, vae_dim=8,
                  clip_text_vocab=512, clip_text_dim=64, clip_text_layers=1),
}
assert tuple(PRESETS) == PRESET_NAMES


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class TensorSpec:
    key: str
    shape: tuple[int, ...]
    fill: str = "normal"  # "normal": N(0, std); "one": 1 + N(0, std) (norm scales); "const"
    value: float = 0.0

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class FileSpec:
    rel: str  # path under the checkpoint root
    what: str
    kind: str  # "tensors", "json", "link" (same bytes as link_of) or "tokenizer" (a folder)
    tensors: list[TensorSpec] = field(default_factory=list)
    tag: str = ""  # seed salt for the random values
    link_of: str | None = None
    content: Any = None  # for "json"

    @property
    def params(self) -> int:
        return sum(t.numel for t in self.tensors)

    @property
    def link_target(self) -> str:
        """``link_of`` of a "link" file; ValueError for the other kinds."""
        if self.link_of is None:
            raise ValueError(f"{self.rel}: a {self.kind} file, not a link")
        return self.link_of

    @property
    def data_bytes(self) -> int:
        return sum(t.numel for t in self.tensors) * DTYPE.itemsize

    @property
    def estimate(self) -> int:
        """Bytes on disk, at most (tensor bytes + torch.save's overhead)."""
        if self.kind == "tensors":
            return self.data_bytes + TENSOR_OVERHEAD * len(self.tensors) + FILE_OVERHEAD
        return FILE_OVERHEAD  # json, tokenizer (~40 KB)


@dataclass
class Plan:
    root: Path
    sizes: Sizes
    seed: int = 0
    lora_rank: int = 64
    distinct_cond: bool = False
    clip_textual: bool = False
    shard_mb: float = DEFAULT_SHARD_MB
    files: list[FileSpec] = field(default_factory=list)

    def settings(self) -> dict[str, Any]:
        return {"sizes": asdict(self.sizes), "seed": self.seed, "lora_rank": self.lora_rank,
                "distinct_cond": self.distinct_cond, "clip_textual": self.clip_textual,
                "shard_mb": self.shard_mb, "dtype": "bfloat16", "chunk": CHUNK}

    def params(self, prefix: str = "") -> int:
        return sum(f.params for f in self.files if f.rel.startswith(prefix))


def _spec(key: str, shape: tuple[int, ...]) -> TensorSpec:
    module, _, leaf = key.rpartition(".")
    if key == "log_scale":
        return TensorSpec(key, shape, "const", math.log(1 / 0.07))
    if leaf == "gamma" or (leaf == "weight" and len(shape) == 1
                           and "norm" in module.rpartition(".")[2]):
        return TensorSpec(key, shape, "one")
    return TensorSpec(key, shape)


def _specs(state: dict[str, torch.Tensor], prefix: str = "") -> list[TensorSpec]:
    return [_spec(prefix + k, tuple(v.shape)) for k, v in state.items()]


def _vae_specs(s: Sizes) -> list[TensorSpec]:
    vae_mod = import_diffsynth_module("diffsynth.models.wan_video_vae")
    with torch.device("meta"):
        model = vae_mod.VideoVAE_(dim=s.vae_dim, z_dim=LATENT_CHANNELS)
    return _specs(model.state_dict())


def _t5_specs(s: Sizes) -> list[TensorSpec]:
    t5_mod = import_diffsynth_module("diffsynth.models.wan_video_text_encoder")
    with torch.device("meta"):
        model = t5_mod.WanTextEncoder(
            vocab=s.t5_vocab, dim=s.t5_dim, dim_attn=s.t5_dim,
            dim_ffn=int(s.t5_dim * T5_FFN_RATIO), num_heads=s.t5_dim // T5_HEAD_DIM,
            num_layers=s.t5_layers, num_buckets=T5_BUCKETS, shared_pos=False, dropout=0.0)
    return _specs(model.state_dict())


def _clip_specs(s: Sizes, textual: bool) -> list[TensorSpec]:
    clip_mod = import_diffsynth_module("diffsynth.models.wan_video_image_encoder")
    model = clip_mod.clip_xlm_roberta_vit_h_14(
        pretrained=False, return_transforms=False, return_tokenizer=False, device="meta",
        vision_dim=s.clip_width, vision_layers=s.clip_layers,
        vision_heads=s.clip_width // CLIP_HEAD_DIM, vision_mlp_ratio=CLIP_MLP_RATIO,
        image_size=224, patch_size=14, embed_dim=CLIP_EMBED_DIM)
    specs = _specs(model.state_dict())  # log_scale, visual.*
    if textual:
        specs += _clip_textual_specs(s)
    return specs


def _clip_textual_specs(s: Sizes) -> list[TensorSpec]:
    """Wan's XLMRobertaWithHead keys (diffsynth builds no text tower, so written out here)."""
    d, ffn = s.clip_text_dim, 4 * s.clip_text_dim
    mid = (d + CLIP_EMBED_DIM) // 2
    shapes: list[tuple[str, tuple[int, ...]]] = [
        ("token_embedding.weight", (s.clip_text_vocab, d)), ("type_embedding.weight", (1, d)),
        ("pos_embedding.weight", (CLIP_TEXT_POSITIONS, d))]
    for i in range(s.clip_text_layers):
        b = f"blocks.{i}."
        for p in "qkvo":
            shapes += [(f"{b}attn.{p}.weight", (d, d)), (f"{b}attn.{p}.bias", (d,))]
        shapes += [(f"{b}norm1.weight", (d,)), (f"{b}norm1.bias", (d,)),
                   (f"{b}ffn.0.weight", (ffn, d)), (f"{b}ffn.0.bias", (ffn,)),
                   (f"{b}ffn.2.weight", (d, ffn)), (f"{b}ffn.2.bias", (d,)),
                   (f"{b}norm2.weight", (d,)), (f"{b}norm2.bias", (d,))]
    shapes += [("norm.weight", (d,)), ("norm.bias", (d,)), ("head.0.weight", (mid, d)),
               ("head.2.weight", (CLIP_EMBED_DIM, mid))]
    return [_spec("textual." + k, shape) for k, shape in shapes]


def _dit_groups(cfg: DiTConfig, rank: int) -> list[list[TensorSpec]]:
    """Release keys of a DiT, grouped: everything outside the blocks, then one per block."""
    with torch.device("meta"):
        model = PoseGenDiT(cfg)
    targets = set(default_lora_targets(cfg))
    groups: dict[str, list[TensorSpec]] = {"": []}
    for key, value in model.state_dict().items():
        shape = tuple(value.shape)
        layer, _, leaf = key.rpartition(".")
        parts = key.split(".")
        group = groups.setdefault(".".join(parts[:2]) if parts[0] == "blocks" else "", [])
        base = _spec(key, shape)
        if layer not in targets:
            group.append(replace(base, key=KEY_PREFIX + key))
            continue
        group.append(replace(base, key=f"{KEY_PREFIX}{layer}.base_layer.{leaf}"))
        if leaf == "weight":
            if len(shape) != 2:
                raise MakeFullError(f"LoRA target {layer} has a {len(shape)}-d weight; the "
                                    "release's merge folds LoRA into 2-d weights only")
            group += [TensorSpec(f"{KEY_PREFIX}{layer}{LORA_A}", (rank, shape[1])),
                      TensorSpec(f"{KEY_PREFIX}{layer}{LORA_B}", (shape[0], rank))]
    return list(groups.values())


def _shards(groups: list[list[TensorSpec]], limit: float) -> list[list[TensorSpec]]:
    """Whole groups packed in order into shards of at most ``limit`` bytes (>= 1 group)."""
    shards: list[list[TensorSpec]] = []
    size = 0
    for group in groups:
        nbytes = sum(t.numel for t in group) * DTYPE.itemsize
        if not shards or size + nbytes > limit:
            shards.append([])
            size = 0
        shards[-1] += group
        size += nbytes
    return shards


def make_plan(root: str | Path, sizes: Sizes, *, seed: int = 0, lora_rank: int = 64,
              distinct_cond: bool = False, clip_textual: bool = False,
              shard_mb: float = DEFAULT_SHARD_MB) -> Plan:
    sizes.validate()
    if lora_rank < 1:
        raise MakeFullError(f"--lora-rank must be >= 1, got {lora_rank}")
    if shard_mb <= 0:
        raise MakeFullError(f"--shard-mb must be > 0, got {shard_mb}")
    plan = Plan(Path(root), sizes, seed, lora_rank, distinct_cond, clip_textual, shard_mb)
    files = plan.files
    files.append(FileSpec(TOKENIZER_DIR, "umT5 tokenizer (small, trained locally)",
                          "tokenizer"))
    files.append(FileSpec(VAE_FILE, f"Wan2.1 VAE (dim {sizes.vae_dim})", "tensors",
                          _vae_specs(sizes), "vae"))
    files.append(FileSpec(
        CLIP_FILE, f"CLIP ViT ({sizes.clip_layers} x {sizes.clip_width})"
        + (" + XLM-R text tower" if clip_textual else ""), "tensors",
        _clip_specs(sizes, clip_textual), "clip"))
    files.append(FileSpec(T5_FILE, f"umT5 encoder ({sizes.t5_layers} x {sizes.t5_dim})",
                          "tensors", _t5_specs(sizes), "t5"))
    cfg = sizes.dit_config()
    shards = _shards(_dit_groups(cfg, lora_rank), shard_mb * 1e6)
    names = [f"pytorch_model-{n + 1:05d}-of-{len(shards):05d}.bin" for n in range(len(shards))]
    for folder, kind in ((BASE_DIT_DIR, "base"), (COND_DIT_DIR, "cond")):
        for name, shard in zip(names, shards, strict=True):
            rel = f"{folder}/{name}"
            if kind == "cond" and not distinct_cond:
                files.append(FileSpec(rel, "DiT cond shard = base shard", "link",
                                      link_of=f"{BASE_DIT_DIR}/{name}"))
            else:
                files.append(FileSpec(rel, f"DiT {kind} shard", "tensors", shard,
                                      f"dit-{kind}"))
        files.append(FileSpec(f"{folder}/{CONFIG_FILE}", "DiT constructor keywords", "json",
                              content=cfg.to_dict()))
    return plan


# ----------------------------------------------------------------------------- values


def _chunk_seed(seed: int, tag: str, key: str, chunk: int) -> int:
    digest = hashlib.blake2b(f"{seed}|{tag}|{key}|{chunk}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


_local = threading.local()


def _scratch(n: int) -> torch.Tensor:
    """A float32 buffer of ``n`` values, one per thread, reused.

    Allocating a fresh 16 MB buffer per chunk made glibc raise its mmap threshold and keep
    the freed buffers in per-thread arenas (+300 MB RSS per GB written, measured).
    """
    if n <= 1 << 16:
        return torch.empty(n, dtype=torch.float32)
    buf = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = torch.empty(CHUNK, dtype=torch.float32)
    return buf[:n]


def _random_tensor(spec: TensorSpec, seed: int, tag: str, pool: ThreadPoolExecutor
                   ) -> torch.Tensor:
    out = torch.empty(spec.shape, dtype=DTYPE)
    if spec.fill == "const":
        return out.fill_(spec.value)
    flat = out.view(-1)

    def fill(i: int) -> None:
        part = flat[i * CHUNK:(i + 1) * CHUNK]
        gen = torch.Generator().manual_seed(_chunk_seed(seed, tag, spec.key, i))
        values = _scratch(part.numel())
        values.normal_(0.0, VALUE_STD, generator=gen)  # float32 + cast beats bf16 normal_
        if spec.fill == "one":
            values.add_(1.0)
        part.copy_(values)

    chunks = -(-flat.numel() // CHUNK)
    if chunks == 1:
        fill(0)
    else:
        list(pool.map(fill, range(chunks)))
    return out


# ----------------------------------------------------------------------------- progress


def fmt_bytes(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


class Progress:
    """Bytes written / total, rate and ETA: one updating line on a TTY, else periodic lines."""

    def __init__(self, total: int, stream: TextIO, live: bool | None = None,
                 interval: float | None = None) -> None:
        self.total, self.stream = max(total, 1), stream
        self.live = stream.isatty() if live is None else live
        self.interval = interval or (0.5 if self.live else 15.0)
        self.done = 0
        self.label = ""
        self.current: Path | None = None
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def phase(self, label: str, current: Path | None = None) -> None:
        with self._lock:
            self.label, self.current = label, current
        if self.live:
            self._emit()

    def file_done(self, nbytes: int, label: str) -> None:
        with self._lock:
            self.done += nbytes
            self.current = None
            self.label = label
        self._emit()

    def written(self) -> int:
        extra = 0
        if self.current is not None:
            with contextlib.suppress(OSError):
                extra = self.current.stat().st_size
        return self.done + extra

    def line(self) -> str:
        written, elapsed = self.written(), time.monotonic() - self.t0
        rate = written / elapsed if elapsed > 0 else 0.0
        eta = format_seconds(max(0.0, self.total - written) / rate) if rate > 0 else "--:--"
        pct = 100.0 * min(written, self.total) / self.total
        return (f"[{fmt_bytes(written)} / {fmt_bytes(self.total)} {pct:5.1f}%] "
                f"{fmt_bytes(rate)}/s ETA {eta}  {self.label}")

    def _emit(self) -> None:
        with self._lock:
            line = self.line()
            if self.live:
                self.stream.write("\r\033[K" + line)
            else:
                self.stream.write(line + "\n")
            self.stream.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._emit()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        with self._lock:
            self.total = max(self.done, 1)  # the plan's estimate holds some slack
            self.label = "finished" if self.label.endswith(" done") else self.label
        self._emit()
        if self.live:
            self.stream.write("\n")
            self.stream.flush()


# ----------------------------------------------------------------------------- writing


def _load_manifest(plan: Plan) -> dict[str, Any]:
    """The manifest of an earlier run with these settings, or a new one; refuse otherwise."""
    path = plan.root / MANIFEST
    if path.is_file():
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise MakeFullError(f"{path}: unreadable ({e}); delete it and the files next to "
                                "it, or choose an empty folder") from None
        old = manifest.get("settings")
        if old != plan.settings():
            diff = _settings_diff(old or {}, plan.settings())
            raise MakeFullError(f"{plan.root} holds a make-full checkpoint written with other "
                                f"settings ({diff}); use those settings to resume, or choose "
                                "an empty folder")
        manifest.setdefault("complete", {})
        return manifest
    foreign = [f.rel for f in plan.files if (plan.root / f.rel).exists()]
    if foreign:
        raise MakeFullError(f"{plan.root} already holds {foreign[0]} (and {len(foreign) - 1} "
                            f"more planned files) not written by make-full (no {MANIFEST}); "
                            "choose an empty folder, it will not overwrite them")
    return {"random_weights": True, "settings": plan.settings(), "complete": {}}


def _settings_diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    flat_old = {**old.get("sizes", {}), **{k: v for k, v in old.items() if k != "sizes"}}
    flat_new = {**new["sizes"], **{k: v for k, v in new.items() if k != "sizes"}}
    diff = [f"{k}: {flat_old.get(k)} -> {flat_new.get(k)}" for k in flat_new
            if flat_old.get(k) != flat_new.get(k)]
    return ", ".join(diff) or "unknown format"


def _on_disk(root: Path, f: FileSpec) -> int:
    path = root / f.rel
    if f.kind == "tokenizer":
        return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    return path.stat().st_size


def _is_complete(plan: Plan, f: FileSpec, manifest: dict[str, Any], links: bool) -> bool:
    entry = manifest["complete"].get(f.rel)
    path = plan.root / f.rel
    if entry is None or not path.exists():
        return False
    try:
        if _on_disk(plan.root, f) != entry["bytes"]:
            return False
        if f.kind == "link" and links:
            return os.path.samefile(path, plan.root / f.link_target)
    except (OSError, KeyError, TypeError):
        return False
    return True


def _pending(plan: Plan, manifest: dict[str, Any], links: bool) -> list[FileSpec]:
    """Files to (re)write; a link is redone when the file it links to is."""
    todo = {f.rel for f in plan.files if not _is_complete(plan, f, manifest, links)}
    todo |= {f.rel for f in plan.files if f.link_of in todo}
    return [f for f in plan.files if f.rel in todo]


def _needs(plan: Plan, pending: list[FileSpec], links: bool) -> int:
    by_rel = {f.rel: f for f in plan.files}
    total = 0
    for f in pending:
        if f.kind == "link":
            total += 0 if links else by_rel[f.link_target].estimate
        else:
            total += f.estimate
    return total


def _existing_folder(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_space(root: Path, need: int) -> int:
    free = shutil.disk_usage(_existing_folder(root)).free
    if free < need:
        raise MakeFullError(
            f"not enough free disk space for make-full in {root}: it needs "
            f"{fmt_bytes(need)} ({need} bytes), {fmt_bytes(free)} are free; free "
            "space, choose a folder on a bigger disk, or write less (--scale tiny, or "
            "without --distinct-cond)")
    return free


def _links_work(root: Path) -> bool:
    fd, name = tempfile.mkstemp(prefix=".make-full-link-probe.", dir=root)
    os.close(fd)
    other = Path(name + ".link")
    try:
        os.link(name, other)
        return True
    except OSError:
        return False
    finally:
        for p in (Path(name), other):
            with contextlib.suppress(OSError):
                p.unlink()


def _clear_stale(root: Path, f: FileSpec) -> None:
    """Remove what an interrupted run left of ``f``: temp files and an unrecorded file."""
    path = root / f.rel
    folder = path if f.kind == "tokenizer" else path.parent
    pattern = ".*.tmp*" if f.kind == "tokenizer" else f".{path.name}.*.tmp*"
    if folder.is_dir():
        for tmp in folder.glob(pattern):
            with contextlib.suppress(OSError):
                tmp.unlink()
    if f.kind != "tokenizer" and (path.is_file() or path.is_symlink()):
        path.unlink()


@contextlib.contextmanager
def _pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads())) as pool:
        yield pool


def _write_file(plan: Plan, f: FileSpec, links: bool, pool: ThreadPoolExecutor,
                progress: Progress) -> str:
    path = plan.root / f.rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if f.kind == "tokenizer":
        from .tiny_encoders import write_tiny_tokenizer

        progress.phase(f"training tokenizer {f.rel}/")
        vocab = write_tiny_tokenizer(path, seed=plan.seed)
        if vocab > plan.sizes.t5_vocab:
            raise MakeFullError(f"tokenizer has {vocab} ids, more than --t5-vocab "
                                f"{plan.sizes.t5_vocab}")
        return "written"
    if f.kind == "json":
        atomic_write_json(path, f.content)
        return "written"
    if f.kind == "link":
        source = plan.root / f.link_target
        with atomic_path(path) as tmp:
            progress.phase(f"{'linking' if links else 'copying'} {f.rel}", tmp)
            if links:
                tmp.unlink()
                os.link(source, tmp)
            else:
                shutil.copyfile(source, tmp)
        return f"hard link of {f.link_of}" if links else f"copy of {f.link_of}"
    progress.phase(f"generating {f.rel}")
    state = {t.key: _random_tensor(t, plan.seed, f.tag, pool) for t in f.tensors}
    with atomic_path(path) as tmp:
        progress.phase(f"writing {f.rel}", tmp)
        torch.save(state, tmp)
    del state
    return "written"


def peak_rss() -> int:
    """This process's peak resident memory in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _table(rows: list[tuple[str, int | None, int, str]], out: TextIO) -> None:
    width = max(len(r[0]) for r in rows)
    for rel, params, nbytes, note in rows:
        p = f"{params:>15,} params" if params is not None else " " * 22
        out.write(f"  {rel:<{width}}  {p}  {fmt_bytes(nbytes):>10}  {note}\n")


def _totals(plan: Plan, sizes_of: dict[str, int], out: TextIO) -> None:
    for label, prefix in (("VAE", VAE_FILE), ("umT5", T5_FILE), ("CLIP", CLIP_FILE),
                          ("DiT base", BASE_DIT_DIR + "/"), ("DiT cond", COND_DIT_DIR + "/")):
        nbytes = sum(v for k, v in sizes_of.items() if k.startswith(prefix))
        shards = [f for f in plan.files if f.rel.startswith(prefix) and f.rel.endswith(".bin")]
        more = f" in {len(shards)} shards" if shards else ""
        params = plan.params(prefix)
        if prefix.startswith(COND_DIT_DIR) and not plan.distinct_cond:
            params = plan.params(BASE_DIT_DIR + "/")
            more += " (links to the base shards unless the disk has no hard links)"
        out.write(f"  {label:<9} {prefix:<56} {params:>15,} params  "
                  f"{fmt_bytes(nbytes):>10}{more}\n")


def print_plan(plan: Plan, out: TextIO, links: bool = True) -> None:
    by_rel = {f.rel: f for f in plan.files}
    rows, sizes_of = [], {}
    for f in plan.files:
        nbytes = by_rel[f.link_target].estimate if f.kind == "link" else f.estimate
        note = f.what + (" (hard link, 0 extra bytes)" if f.kind == "link" and links else "")
        rows.append((f.rel, f.params if f.kind == "tensors" else None, nbytes, note))
        sizes_of[f.rel] = nbytes
    _table(rows, out)
    out.write("totals (bytes: tensor data plus at most torch.save's overhead):\n")
    _totals(plan, sizes_of, out)
    cond = ("distinct random weights (--distinct-cond)" if plan.distinct_cond
            else "hard links to the base shards (no extra disk)" if links
            else "copies of the base shards (this filesystem has no hard links)")
    need = _needs(plan, list(plan.files), links)
    out.write(f"  all: {plan.params():,} params in new tensors, {fmt_bytes(need)} to write "
              f"({need} bytes); cond DiT: {cond}\n")


def make_full(plan: Plan, *, dry_run: bool = False, out: TextIO | None = None,
              err: TextIO | None = None) -> dict[str, int]:
    """Write (or, with ``dry_run``, only print) ``plan``; return {rel: bytes on disk}."""
    out, err = out or sys.stdout, err or sys.stderr
    root = plan.root
    out.write(f"make-full: {'plan for' if dry_run else 'writing'} a checkpoint with RANDOM "
              f"weights (NOT the PoseGen release) in {root}\n")
    if dry_run:
        print_plan(plan, out)
        free = shutil.disk_usage(_existing_folder(root)).free
        need = _needs(plan, list(plan.files), True)
        out.write(f"  free at {_existing_folder(root)}: {fmt_bytes(free)} "
                  f"({'enough' if free >= need else 'NOT enough'}); dry run: nothing written\n")
        return {}
    manifest = _load_manifest(plan)
    links = not plan.distinct_cond  # assumed until the folder exists to probe
    pending = _pending(plan, manifest, links)
    _check_space(root, _needs(plan, pending, links))
    root.mkdir(parents=True, exist_ok=True)
    if links and not _links_work(root):
        links = False
        pending = _pending(plan, manifest, links)
        _check_space(root, _needs(plan, pending, links))
    need = _needs(plan, pending, links)
    readme = root / README_FILE
    if not readme.is_file() or readme.read_text() != README:
        atomic_write_text(readme, README)
    atomic_write_json(root / MANIFEST, manifest)
    cond = ("distinct random weights (--distinct-cond)" if plan.distinct_cond else
            "hard links to the base shards" if links else
            "copies of the base shards (no hard links on this filesystem)")
    out.write(f"  {len(pending)} of {len(plan.files)} entries to write ({fmt_bytes(need)}), "
              f"{len(plan.files) - len(pending)} already complete; {COND_DIT_DIR}/ = {cond}\n")
    out.flush()
    for f in pending:
        _clear_stale(root, f)
    status: dict[str, str] = {}
    progress = Progress(need, err)
    t0 = time.monotonic()
    try:
        with _pool() as pool:
            todo = {f.rel for f in pending}
            for f in plan.files:
                if f.rel not in todo:
                    status[f.rel] = "already complete, skipped"
                    continue
                status[f.rel] = _write_file(plan, f, links, pool, progress)
                nbytes = _on_disk(root, f)
                manifest["complete"][f.rel] = {"bytes": nbytes, "params": f.params}
                atomic_write_json(root / MANIFEST, manifest)
                progress.file_done(0 if f.kind == "link" and links else nbytes, f"{f.rel} done")
    finally:
        progress.close()
    seconds = time.monotonic() - t0
    sizes_of = {f.rel: _on_disk(root, f) for f in plan.files}
    out.write("files:\n")
    _table([(f.rel, f.params if f.kind == "tensors" else None, sizes_of[f.rel], status[f.rel])
            for f in plan.files], out)
    out.write("totals:\n")
    _totals(plan, sizes_of, out)
    written = progress.done
    out.write(f"  {fmt_bytes(written)} written in {format_seconds(seconds)}; peak RSS "
              f"{fmt_bytes(peak_rss())}; {COND_DIT_DIR}/ = {cond}\n")
    out.write(f"checkpoint with RANDOM weights ready in {root} (see {README_FILE}); it has "
              "the release's layout and sizes but generates noise, not people\n")
    return sizes_of


# ----------------------------------------------------------------------------- CLI


def sizes_from_args(args: argparse.Namespace) -> Sizes:
    overrides = {f.name: getattr(args, f.name) for f in fields(Sizes)
                 if getattr(args, f.name, None) is not None}
    return replace(PRESETS[args.scale], **overrides)


def cmd_make_full(args: argparse.Namespace) -> int:
    plan = make_plan(args.dir, sizes_from_args(args), seed=args.seed, lora_rank=args.lora_rank,
                     distinct_cond=args.distinct_cond, clip_textual=args.clip_textual,
                     shard_mb=args.shard_mb)
    make_full(plan, dry_run=args.dry_run)
    return 0
