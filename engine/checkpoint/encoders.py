"""Load the Wan2.1 VAE, umT5 text encoder, its tokenizer and the CLIP image encoder.

The modules are diffsynth 2.x classes, but their sizes are read from the tensor shapes
in each file: diffsynth picks classes by hashing keys and shapes, and its table knows
only the release sizes, not the tiny random checkpoints the tests and demos use.
Models are built on the meta device (no random init of billions of weights) and
then take the file's tensors with ``load_state_dict(assign=True)``.
"""

from __future__ import annotations

import html
import math
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from engine.checkpoint.layout import CheckpointError
from engine.checkpoint.mapped import open_mapped
from engine.checkpoint.staging import ParallelCopy
from engine.compat import import_diffsynth_module
from engine.vae_tiling import RELEASE_STRIDE, RELEASE_TILE, tiled_decode, tiled_encode

Device = str | torch.device
LATENT_CHANNELS = 16  # PoseGen's DiT reads 16-channel Wan2.1 latents
CLIP_HEAD_DIM = 80  # ViT-H/14: width 1280 over 16 heads; heads are not visible in shapes


def _wan(module: str) -> Any:
    return import_diffsynth_module(f"diffsynth.models.{module}")


# ----------------------------------------------------------------------------- files


def load_state_dict_file(path: str | os.PathLike[str],
                         what: str = "a PyTorch state dict") -> dict[str, Tensor]:
    """``torch.load`` a checkpoint on CPU (weights only), unwrapping 'model_state'/'state_dict'."""
    return _read_file(Path(path), what)[0]


def _read_file(path: Path, what: str) -> tuple[dict[str, Tensor], bool]:
    """The file's tensors (memory-mapped where the format allows) and whether they are."""
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found; expected {what}. Check --ckpt / "
                              "POSEGEN_CKPT_PATH or run `posegen ckpt make-tiny DIR`.")
    try:
        obj, mapped = open_mapped(path)
    except Exception as exc:  # any failure here means the file itself is unusable
        raise CheckpointError(
            f"{path}: cannot be read as {what} ({type(exc).__name__}: {exc}); the file is "
            "truncated or not a PyTorch checkpoint: download it again") from exc
    for wrapper in ("model_state", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, expected {what} "
                              "(a dict of tensors)")
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, Tensor)}
    if not tensors:
        raise CheckpointError(f"{path}: holds no tensors; expected {what}")
    return tensors, mapped


def _on_device(sd: dict[str, Tensor], device: Device, mapped: bool) -> dict[str, Tensor]:
    """The tensors copied to ``device`` in pieces on a few threads (staging.py); the
    file's pages are handed back as they are copied. On a CPU the file's views stay."""
    if torch.device(device).type == "cpu":
        return sd
    copier = ParallelCopy()
    try:
        return {k: copier.to(v, device, mapped) for k, v in sd.items()}
    finally:
        copier.close()


def _tensor(sd: dict[str, Tensor], key: str, path: Path, ndim: int, what: str) -> Tensor:
    t = sd.get(key)
    if t is None:
        raise CheckpointError(f"{path}: key {key!r} is missing; this is not {what}")
    if t.ndim != ndim:
        raise CheckpointError(f"{path}: {key!r} has shape {tuple(t.shape)}, expected a "
                              f"{ndim}-d tensor; this is not {what}")
    return t


def _count_indexed(sd: dict[str, Tensor], prefix: str) -> int:
    """Number of consecutive ``{prefix}{i}.`` groups (layers) in a state dict."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for k in sd if (m := pattern.match(k))}
    return max(found) + 1 if found else 0


def _load_strict(module: nn.Module, sd: dict[str, Tensor], path: Path, what: str,
                 device: Device = "cpu", mapped: bool = False) -> None:
    """Load every tensor by name and shape, on ``device``; one readable error lists what
    does not fit (before anything is copied)."""
    _check_strict(module, sd, path, what)
    module.load_state_dict(_on_device(sd, device, mapped), strict=True, assign=True)


def _check_strict(module: nn.Module, sd: dict[str, Tensor], path: Path, what: str) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = [f"{k}: file {tuple(sd[k].shape)}, model {tuple(expected[k].shape)}"
             for k in sorted(set(sd) & set(expected)) if sd[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected),
                             ("wrong shape", wrong)):
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                parts.append(f"{label} {len(items)}: {', '.join(items[:5])}{more}")
        raise CheckpointError(f"{path}: does not match {what}; " + "; ".join(parts)
                              + ". The file is from another model or corrupted.")


def _finish(module: nn.Module, device: Device, dtype: torch.dtype) -> nn.Module:
    return module.to(device=device, dtype=dtype).eval().requires_grad_(False)


def _param_dtype(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


# ----------------------------------------------------------------------------- VAE

_VAE_WHAT = "a Wan2.1 VAE state dict (VideoVAE_ keys encoder.*, decoder.*, conv1.*, conv2.*)"


def load_vae(path: str | os.PathLike[str], device: Device = "cpu",
             dtype: torch.dtype = torch.float32) -> Any:
    """A ``WanVideoVAE`` whose inner ``VideoVAE_`` has the width stored in the file."""
    path = Path(path)
    sd, mapped = _read_file(path, _VAE_WHAT)
    dim = _tensor(sd, "encoder.conv1.weight", path, 5, _VAE_WHAT).shape[0]
    z_dim = _tensor(sd, "conv2.weight", path, 5, _VAE_WHAT).shape[0]
    if z_dim != LATENT_CHANNELS:
        raise CheckpointError(f"{path}: VAE has {z_dim} latent channels, PoseGen needs the "
                              f"{LATENT_CHANNELS}-channel Wan2.1 VAE (not Wan2.2's)")
    vae_mod = _wan("wan_video_vae")
    skip_init = import_diffsynth_module("diffsynth.core.vram.initialization")
    # WanVideoVAE() hardcodes dim=96; skip its init and swap in the file's width.
    with skip_init.skip_model_initialization():
        vae = vae_mod.WanVideoVAE(z_dim=z_dim)
    with torch.device("meta"):
        inner = vae_mod.VideoVAE_(dim=dim, z_dim=z_dim)
    _load_strict(inner, sd, path, f"a Wan2.1 VAE of width {dim}", device, mapped)
    vae.model = inner
    return _finish(vae, device, dtype)


def _check_video(video: Tensor) -> None:
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"expected a video (3, F, H, W), got {tuple(video.shape)}")
    f, h, w = video.shape[1:]
    if f % 4 != 1 or h % 8 or w % 8:
        raise ValueError(f"video of {f} frames at {h}x{w}: the VAE needs 1 + 4k frames and "
                         "height and width divisible by 8")


@torch.no_grad()
def vae_encode(vae: Any, video: Tensor, device: Device, tiled: bool = False,
               tile_size: tuple[int, int] = RELEASE_TILE,
               tile_stride: tuple[int, int] = RELEASE_STRIDE,
               max_batch: int | None = None) -> Tensor:
    """(3, F, H, W) in [-1, 1] -> latents (16, (F-1)//4+1, H/8, W/8) on ``device``.

    ``tiled``: the release's tiling (engine/vae_tiling.py: diffsynth's tiles and blend,
    tiles batched on the device); else one pass over the whole video.
    """
    _check_video(video)
    video = video.to(dtype=_param_dtype(vae.model))
    if tiled:
        return tiled_encode(vae, video[None], device, tile_size, tile_stride,
                            max_batch=max_batch)[0]
    return vae.encode([video], device=device, tiled=False)[0].to(device)


@torch.no_grad()
def vae_decode(vae: Any, latents: Tensor, device: Device, tiled: bool = False,
               tile_size: tuple[int, int] = RELEASE_TILE,
               tile_stride: tuple[int, int] = RELEASE_STRIDE,
               max_batch: int | None = None) -> Tensor:
    """Latents (16, T, h, w) -> video (3, 4T-3, 8h, 8w) in [-1, 1] on ``device``."""
    if latents.ndim != 4 or latents.shape[0] != LATENT_CHANNELS:
        raise ValueError(f"expected latents ({LATENT_CHANNELS}, T, h, w), "
                         f"got {tuple(latents.shape)}")
    latents = latents.to(dtype=_param_dtype(vae.model))
    if tiled:
        return tiled_decode(vae, latents[None], device, tile_size, tile_stride,
                            max_batch=max_batch)[0]
    return vae.decode([latents], device=device, tiled=False)[0].to(device)


# ----------------------------------------------------------------------------- umT5

_T5_WHAT = "a Wan umT5 text encoder state dict (token_embedding.*, blocks.N.*, norm.*)"


def load_text_encoder(path: str | os.PathLike[str], device: Device = "cpu",
                      dtype: torch.dtype = torch.bfloat16) -> Any:
    """A ``WanTextEncoder`` (umT5 encoder) sized from the file, dropout off."""
    path = Path(path)
    sd, mapped = _read_file(path, _T5_WHAT)
    vocab, dim = _tensor(sd, "token_embedding.weight", path, 2, _T5_WHAT).shape
    dim_attn = _tensor(sd, "blocks.0.attn.q.weight", path, 2, _T5_WHAT).shape[0]
    dim_ffn = _tensor(sd, "blocks.0.ffn.fc1.weight", path, 2, _T5_WHAT).shape[0]
    num_layers = _count_indexed(sd, "blocks.")
    # Wan's umT5 has one relative-position table per block (shared_pos=False);
    # the table is (num_buckets, num_heads), the only place the head count shows.
    shared_pos = "pos_embedding.embedding.weight" in sd
    pos_key = "pos_embedding.embedding.weight" if shared_pos else \
        "blocks.0.pos_embedding.embedding.weight"
    num_buckets, num_heads = _tensor(sd, pos_key, path, 2, _T5_WHAT).shape
    if dim_attn % num_heads:
        raise CheckpointError(f"{path}: attention width {dim_attn} is not divisible by "
                              f"{num_heads} heads (from {pos_key}); the file is inconsistent")
    with torch.device("meta"):
        encoder = _wan("wan_video_text_encoder").WanTextEncoder(
            vocab=vocab, dim=dim, dim_attn=dim_attn, dim_ffn=dim_ffn, num_heads=num_heads,
            num_layers=num_layers, num_buckets=num_buckets, shared_pos=shared_pos,
            dropout=0.0)
    what = f"a umT5 encoder ({num_layers} layers, width {dim})"
    _load_strict(encoder, sd, path, what, device, mapped)
    return _finish(encoder, device, dtype)


def _wan_clean(text: str) -> str:
    """Wan's 'whitespace' prompt cleaning: fix mojibake, unescape HTML, collapse spaces."""
    import ftfy  # a diffsynth dependency; imported late to keep module import light

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return re.sub(r"\s+", " ", text).strip()


class PromptTokenizer:
    """The umT5 tokenizer as Wan calls it: cleaned text, ``seq_len`` ids with EOS, padded."""

    def __init__(self, hf_tokenizer: Any, seq_len: int = 512) -> None:
        self.hf = hf_tokenizer
        self.seq_len = seq_len

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def clean(self, text: str) -> str:
        return _wan_clean(text)

    def _encode(self, text: str, **kwargs: Any) -> Any:
        return self.hf([text], padding="max_length", truncation=True, max_length=self.seq_len,
                       add_special_tokens=True, return_tensors="pt", **kwargs)

    def __call__(self, text: str) -> tuple[Tensor, Tensor]:
        """``(ids, mask)``, both LongTensor (1, seq_len); the text is cleaned first."""
        enc = self._encode(self.clean(text))
        return enc["input_ids"].long(), enc["attention_mask"].long()

    def token_index_of_char(self, text: str, char_pos: int) -> int:
        """Index (into ``__call__``'s ids for ``text``) of the token covering ``text[char_pos]``.

        ``text`` is what would be passed to ``__call__`` (raw or already cleaned); the
        position is carried through the cleaning.
        """
        if not 0 <= char_pos < len(text) or text[char_pos].isspace():
            raise ValueError(f"character position {char_pos} is not on a word of {text!r}")
        cleaned = self.clean(text)
        pos = char_pos
        if cleaned != text:
            # Cleaning acts locally (whitespace runs, entities, character fixes), so the
            # cleaned prefix ends where the character lands; the sentinel keeps the
            # prefix's trailing space from being stripped.
            pos = len(self.clean(text[:char_pos] + "x")) - 1
            if not (0 <= pos < len(cleaned) and cleaned[pos] == text[char_pos]):
                raise ValueError(f"cannot locate character {char_pos} of {text!r} in the "
                                 f"cleaned prompt {cleaned!r}")
        offsets = self._encode(cleaned, return_offsets_mapping=True)["offset_mapping"][0]
        for index, (start, end) in enumerate(offsets.tolist()):
            if start <= pos < end:
                return index
        raise ValueError(f"character {char_pos} of the prompt falls past the "
                         f"{self.seq_len}-token limit")


def load_tokenizer(folder: str | os.PathLike[str], seq_len: int = 512) -> PromptTokenizer:
    folder = Path(folder)
    expected = "the umT5 tokenizer (tokenizer.json, tokenizer_config.json, spiece.model)"
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: tokenizer folder not found; expected {expected}")
    from transformers import AutoTokenizer

    try:
        hf = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # transformers raises many types for a bad folder
        raise CheckpointError(f"{folder}: cannot load {expected} "
                              f"({type(exc).__name__}: {exc})") from exc
    if not getattr(hf, "is_fast", False):
        raise CheckpointError(f"{folder}: loaded a slow tokenizer; a tokenizer.json is needed "
                              "for character offsets (keyword lookup)")
    return PromptTokenizer(hf, seq_len=seq_len)


@torch.no_grad()
def encode_prompt(text_encoder: Any, tokenizer: PromptTokenizer, text: str,
                  device: Device) -> Tensor:
    """Prompt -> (1, seq_len, dim); positions past the prompt's tokens are zero (as Wan)."""
    ids, mask = tokenizer(text)
    vocab = text_encoder.token_embedding.num_embeddings
    if int(ids.max()) >= vocab:
        raise CheckpointError(f"tokenizer ids reach {int(ids.max())} but the text encoder has "
                              f"{vocab} embeddings: tokenizer and text encoder do not match")
    ids, mask = ids.to(device), mask.to(device)
    context = text_encoder(ids, mask)
    context[:, int(mask.sum()):] = 0
    return context


# ----------------------------------------------------------------------------- CLIP

_CLIP_WHAT = ("an open-clip XLM-RoBERTa ViT-H/14 state dict (visual.*, textual.*, log_scale; "
              "only visual.* is used)")


def _clip_sizes(sd: dict[str, Tensor], path: Path) -> dict[str, Any]:
    patch = _tensor(sd, "visual.patch_embedding.weight", path, 4, _CLIP_WHAT)
    pos = _tensor(sd, "visual.pos_embedding", path, 3, _CLIP_WHAT)
    head = _tensor(sd, "visual.head", path, 2, _CLIP_WHAT)
    mlp = _tensor(sd, "visual.transformer.0.mlp.0.weight", path, 2, _CLIP_WHAT)
    vision_dim, patch_size = patch.shape[0], patch.shape[-1]
    grid = math.isqrt(pos.shape[1] - 1)
    mlp_ratio = mlp.shape[0] / vision_dim
    problems = []
    if grid * grid != pos.shape[1] - 1:
        problems.append(f"visual.pos_embedding has {pos.shape[1]} positions, not 1 + a square")
    if vision_dim % CLIP_HEAD_DIM:
        problems.append(f"vision width {vision_dim} is not a multiple of the head size "
                        f"{CLIP_HEAD_DIM}, so the head count cannot be inferred")
    if int(vision_dim * mlp_ratio) != mlp.shape[0]:
        problems.append(f"MLP width {mlp.shape[0]} is not expressible as a ratio of "
                        f"{vision_dim}")
    if problems:
        raise CheckpointError(f"{path}: unsupported CLIP sizes: " + "; ".join(problems))
    return dict(embed_dim=head.shape[1], image_size=grid * patch_size, patch_size=patch_size,
                vision_dim=vision_dim, vision_mlp_ratio=mlp_ratio,
                vision_heads=vision_dim // CLIP_HEAD_DIM,
                vision_layers=_count_indexed(sd, "visual.transformer."))


def load_image_encoder(path: str | os.PathLike[str], device: Device = "cpu",
                       dtype: torch.dtype = torch.float32) -> Any:
    """A ``WanImageEncoder`` (its ``encode_image`` works) with the file's vision sizes."""
    path = Path(path)
    sd, mapped = _read_file(path, _CLIP_WHAT)
    sizes = _clip_sizes(sd, path)
    clip_mod = _wan("wan_video_image_encoder")
    model, transforms = clip_mod.clip_xlm_roberta_vit_h_14(
        pretrained=False, return_transforms=True, return_tokenizer=False,
        dtype=torch.float32, device="meta", **sizes)
    visual = {k.removeprefix("visual."): v for k, v in sd.items() if k.startswith("visual.")}
    what = (f"a CLIP vision tower ({sizes['vision_layers']} layers, "
            f"width {sizes['vision_dim']}) under visual.*")
    _load_strict(model.visual, visual, path, what, device, mapped)
    log_scale = sd.get("log_scale", torch.tensor(math.log(1 / 0.07)))
    model.log_scale = nn.Parameter(log_scale.reshape(()).float(), requires_grad=False)
    # WanImageEncoder() hardcodes the ViT-H/14 sizes and builds 632 M random weights;
    # give a bare instance the same two attributes instead.
    encoder = clip_mod.WanImageEncoder.__new__(clip_mod.WanImageEncoder)
    nn.Module.__init__(encoder)
    encoder.model, encoder.transforms = model, transforms
    return _finish(encoder, device, dtype)


@torch.no_grad()
def encode_image(image_encoder: Any, image: Tensor, device: Device) -> Tensor:
    """Image (3, 1, H, W) or (1, 3, H, W) in [-1, 1] -> CLIP tokens (1, 257, 1280) for ViT-H/14.

    The tokens are the output of the penultimate transformer block, as Wan uses them.
    """
    if image.ndim == 4 and image.shape[:2] == (3, 1):
        image = image.permute(1, 0, 2, 3)
    if image.ndim != 4 or image.shape[:2] != (1, 3):
        raise ValueError(f"expected an image (3, 1, H, W) or (1, 3, H, W), "
                         f"got {tuple(image.shape)}")
    image = image.to(device=device, dtype=_param_dtype(image_encoder))
    return image_encoder.encode_image([image])
