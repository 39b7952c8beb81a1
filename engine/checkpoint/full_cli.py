"""`posegen ckpt make-full`'s options, torch-free so that every `posegen` command starts
fast; the writer itself (engine/checkpoint/full.py) loads when the command runs."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_SHARD_MB = 1800.0
PRESET_NAMES = ("full", "tiny")
# CLI flag -> Sizes field, for the per-size overrides.
SIZE_FLAGS = {"--dit-dim": "dit_dim", "--dit-layers": "dit_layers", "--dit-heads": "dit_heads",
              "--dit-ffn": "dit_ffn", "--t5-dim": "t5_dim", "--t5-layers": "t5_layers",
              "--t5-vocab": "t5_vocab", "--clip-width": "clip_width",
              "--clip-layers": "clip_layers", "--vae-dim": "vae_dim"}


def add_make_full_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-full", help="write a FULL-SIZE random-weight checkpoint (loader/GPU tests)",
        description="Write every file of the release's checkpoint layout at the real sizes "
                    "(about 46 GB, bf16) with RANDOM weights. Resumable: run it again after "
                    "an interruption.")
    p.add_argument("dir", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lora-rank", type=int, default=64, help="rank of the DiT LoRA pairs")
    p.add_argument("--distinct-cond", action="store_true",
                   help="give 720p-81f-cond/ its own random weights (default: hard links to "
                        "the base shards, which would hold the same bytes)")
    p.add_argument("--clip-textual", action="store_true",
                   help="also write the CLIP file's XLM-RoBERTa text tower (textual.*, "
                        "~1.1 GB at full size), which the engine never reads")
    p.add_argument("--shard-mb", type=float, default=DEFAULT_SHARD_MB,
                   help="largest DiT shard in MB (whole blocks per shard; default %(default)s)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the files, parameter counts and bytes; write nothing")
    p.add_argument("--scale", choices=sorted(PRESET_NAMES), default="full",
                   help="size preset; the --dit-* etc. flags override single sizes")
    g = p.add_argument_group(
        "size overrides", "Default: the --scale preset's. Heads follow the real head sizes "
        "(umT5 64, CLIP 80); a --clip-width other than 1280 only exercises the CLIP loader, "
        "since the DiT reads 1280-wide CLIP tokens.")
    for flag, name in SIZE_FLAGS.items():
        g.add_argument(flag, dest=name, type=int, default=None, metavar="N")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from engine.checkpoint.full import cmd_make_full

    return cmd_make_full(args)
