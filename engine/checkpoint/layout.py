"""Where the release's files live under a checkpoint directory."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from engine.option_paths import folder_from

CKPT_ENV = "POSEGEN_CKPT_PATH"

VAE_FILE = "Wan2.1_VAE.pth"
T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
TOKENIZER_DIR = "google/umt5-xxl"
CLIP_FILE = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
BASE_DIT_DIR = "720p-81f-base"
COND_DIT_DIR = "720p-81f-cond"
DIT_CONFIG = "model_config.json"


class CheckpointError(ValueError):
    """A checkpoint directory or file is missing, unreadable or has the wrong contents."""


@dataclass(frozen=True)
class CheckpointLayout:
    root: Path

    @property
    def vae(self) -> Path:
        return self.root / VAE_FILE

    @property
    def text_encoder(self) -> Path:
        return self.root / T5_FILE

    @property
    def tokenizer(self) -> Path:
        return self.root / TOKENIZER_DIR

    @property
    def image_encoder(self) -> Path:
        return self.root / CLIP_FILE

    @property
    def base_dit(self) -> Path:
        return self.root / BASE_DIT_DIR

    @property
    def cond_dit(self) -> Path:
        return self.root / COND_DIT_DIR

    def dit_dir(self, kind: str) -> Path:
        """``kind`` is "base" (base and anchor chunks) or "cond" (transition chunks)."""
        if kind not in ("base", "cond"):
            raise ValueError(f"DiT kind must be 'base' or 'cond', got {kind!r}")
        return self.base_dit if kind == "base" else self.cond_dit


def resolve_checkpoint_dir(path: str | os.PathLike[str] | None) -> Path:
    """The explicit path if given, else $POSEGEN_CKPT_PATH; an error says how to get one."""
    root, _ = folder_from(
        path, "--ckpt", CKPT_ENV, error=CheckpointError,
        none_given=(f"no checkpoint directory: pass --ckpt DIR or set {CKPT_ENV}; "
                    "to try the engine without the release weights, run "
                    "`posegen ckpt make-tiny DIR` and point --ckpt at DIR"),
        not_a_folder="checkpoint directory {folder} (from {source}) does not exist "
                     "or is not a directory")
    return root


def _missing_dit_files(folder: Path) -> list[str]:
    if not folder.is_dir():
        return [f"{folder}/ (folder with {DIT_CONFIG} and *.bin)"]
    missing = []
    if not (folder / DIT_CONFIG).is_file():
        missing.append(str(folder / DIT_CONFIG))
    if not any(folder.glob("*.bin")):
        missing.append(f"{folder}/*.bin (DiT state dicts)")
    return missing


def check_layout(layout: CheckpointLayout) -> None:
    """Raise one CheckpointError listing every missing file of the release layout."""
    missing = [str(p) for p in (layout.vae, layout.text_encoder, layout.image_encoder)
               if not p.is_file()]
    if not layout.tokenizer.is_dir():
        missing.append(f"{layout.tokenizer}/ (umT5 tokenizer folder)")
    for folder in (layout.base_dit, layout.cond_dit):
        missing += _missing_dit_files(folder)
    if missing:
        lines = "\n  ".join(missing)
        raise CheckpointError(
            f"checkpoint directory {layout.root} is incomplete; missing:\n  {lines}\n"
            "Download the PoseGen release (Wan2.1-I2V-14B-720P files plus the two DiT "
            "folders) into it, or run `posegen ckpt make-tiny DIR` for random tiny weights.")


def dit_block_count(folder: Path) -> int:
    """The DiT's block count from its config file, without building the model."""
    path = folder / DIT_CONFIG
    try:
        layers = json.loads(path.read_text())["num_layers"]
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; a DiT folder needs {DIT_CONFIG} with the "
                              "DiT's constructor keywords (dim, num_heads, ...)") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: no readable num_layers ({e}); restore it from the "
                              "release") from None
    if not isinstance(layers, int) or layers < 1:
        raise CheckpointError(f"{path}: num_layers {layers!r} is not a block count; restore "
                              "it from the release")
    return layers


def check_share_blocks(blocks: tuple[int, int] | list[int], folder: Path) -> None:
    """-b against the DiT's block count, before anything is loaded."""
    from engine.errors import JobError

    layers = dit_block_count(folder)
    b0, b1 = blocks
    if not 0 <= b0 < b1 <= layers:
        raise JobError(f"-b {b0} {b1}: the shared blocks must lie within the DiT's {layers} "
                       f"blocks (0 <= start < end <= {layers}, from {folder / DIT_CONFIG})")
