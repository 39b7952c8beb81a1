"""`posegen ckpt make-tiny`: the release's checkpoint layout with tiny random weights.

Same file names, key names and interfaces as the release (CLIP 257 x 1280
tokens, 16 latent channels, T5 width = DiT text_dim, even 3-D RoPE parts), so
the loaders that read the release read this too. The weights are random: the
videos it makes are noise shaped by the pipeline, not people.
"""

from __future__ import annotations

from pathlib import Path

import torch

from engine.atomic import atomic_write_text
from engine.models.dit import DiTConfig, PoseGenDiT

from .dit_loader import write_dit_folder
from .layout import CheckpointLayout
from .tiny_encoders import write_tiny_encoders

TINY_TEXT_DIM = 32
TINY_DIT = DiTConfig(dim=64, in_dim=36, ffn_dim=128, out_dim=16, text_dim=TINY_TEXT_DIM,
                     freq_dim=64, eps=1e-6, patch_size=(1, 2, 2), num_heads=2, num_layers=4,
                     has_image_input=True, has_image_pos_emb=False, shift_ref_pos=True,
                     use_hand=True, use_hand_proj=True)
README = """This is a TINY posegen checkpoint with RANDOM weights, written by
`posegen ckpt make-tiny`. It has the PoseGen release's file layout and key
names so every loader is exercised, but it generates noise, not people.
Use it with small sizes, e.g. --height 64 --width 32 and -b 2 4 (4 DiT blocks).
"""


def make_tiny(root: str | Path, seed: int = 0) -> CheckpointLayout:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    layout = CheckpointLayout(root)
    write_tiny_encoders(root, seed=seed, text_dim=TINY_TEXT_DIM)
    for n, kind in enumerate(("base", "cond")):
        torch.manual_seed(seed + 101 + n)
        write_dit_folder(layout.dit_dir(kind), PoseGenDiT(TINY_DIT), seed=seed + n)
    atomic_write_text(root / "README-TINY.txt", README)
    return layout
