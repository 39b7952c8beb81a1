"""The generation options shared by `posegen generate` and `posegen session new`."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.errors import JobError
from engine.prompt import read_prompt_file
from engine.settings import (
    COMPILE_MODES,
    VAE_TILINGS,
    Budget,
    JobInputs,
    JobSettings,
    parse_budget,
    parse_device,
)

DEFAULTS = JobSettings()


def add_generation_options(p: argparse.ArgumentParser, with_inputs: bool = True) -> None:
    if with_inputs:
        g = p.add_argument_group("inputs")
        g.add_argument("--image", type=Path, required=True, help="reference image of the person")
        g.add_argument("--pose", type=Path, required=True, help="pose video (OpenPose style)")
        g.add_argument("--hand", type=Path, required=True, help="hand video (normals on hands)")
        src = g.add_mutually_exclusive_group(required=True)
        src.add_argument("--prompt", help="text describing the reference image; must name the "
                                          "subject: woman, girl, man or boy")
        src.add_argument("--prompt-file", type=Path,
                         help="file with the prompt (the longest line is used)")
    g = p.add_argument_group("sampling")
    g.add_argument("--seed", type=int, default=DEFAULTS.seed)
    g.add_argument("--steps", type=int, default=DEFAULTS.steps, help="sampling steps per chunk")
    g.add_argument("--cfg", type=float, default=DEFAULTS.cfg_scale, dest="cfg_scale",
                   help="classifier-free guidance scale")
    g.add_argument("-s", "--share-steps", type=int, nargs=2, metavar=("START", "END"),
                   default=DEFAULTS.share_steps, help="kv-share steps [START, END)")
    g.add_argument("-b", "--share-blocks", type=int, nargs=2, metavar=("START", "END"),
                   default=DEFAULTS.share_blocks, help="kv-share DiT blocks [START, END)")
    g.add_argument("--max-block", type=int, default=DEFAULTS.max_block_idx, dest="max_block_idx",
                   help="last DiT block whose keyword map is used")
    g.add_argument("--no-mask", action="store_false", dest="use_mask",
                   help="share the background everywhere (no foreground mask)")
    g.add_argument("--anchor", type=int, default=DEFAULTS.anchor, help="anchor chunk (even)")
    g.add_argument("--num-chunks", type=int, default=None,
                   help="number of chunks K (default: enough to cover the video)")
    g.add_argument("--no-pad", action="store_false", dest="pad",
                   help="do not mirror-pad the end; the output may be shorter than the input")
    g = p.add_argument_group("size")
    g.add_argument("--height", type=int, default=DEFAULTS.height,
                   help="video height in pixels, a multiple of 16")
    g.add_argument("--width", type=int, default=DEFAULTS.width,
                   help="video width in pixels, a multiple of 16")
    g.add_argument("--frames", type=int, default=DEFAULTS.frames, help="frames per chunk N")
    g.add_argument("--head", type=int, default=DEFAULTS.head, help="head overlap Hd")
    g.add_argument("--tail", type=int, default=DEFAULTS.tail, help="tail overlap Tl")
    g = p.add_argument_group("hardware")
    g.add_argument("--device", default="cpu", type=device_arg, help="cpu, cuda or cuda:N")
    g.add_argument("-p", "--budget", default="none",
                   help="DiT parameters kept on the GPU: 4e9, 4G, 4*10**9, auto (the most that "
                        "fits the GPU's free memory) or none (all)")
    g.add_argument("--dtype", default=DEFAULTS.dtype,
                   help="auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16")
    g.add_argument("--vae-tiling", choices=VAE_TILINGS, default=DEFAULTS.vae_tiling,
                   help="release: encode the pose/hand clips and decode in the release's "
                        "tiles (its exact numbers); none: whole frames, faster, "
                        "differs from the release at tile seams (docs/engine.md#numerics)")
    c = g.add_mutually_exclusive_group()
    c.add_argument("--compile", choices=COMPILE_MODES, default=DEFAULTS.compile,
                   help="compiled DiT blocks (torch.compile): auto compiles on CUDA when every "
                        "block is resident, on also on CPU, off never; the compiled code is "
                        "cached for the next worker (docs/engine.md#compiled-dit-blocks)")
    c.add_argument("--no-compile", action="store_const", const="off", dest="compile",
                   help="run the DiT blocks eager (= --compile off)")


def device_arg(text: str) -> str:
    try:
        return parse_device(text)
    except JobError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix(f"--device {text!r}: ")) from None


def settings_from_args(args: argparse.Namespace) -> JobSettings:
    return JobSettings(
        height=args.height, width=args.width, frames=args.frames, head=args.head,
        tail=args.tail, steps=args.steps, cfg_scale=args.cfg_scale, seed=args.seed,
        share_steps=tuple(args.share_steps), share_blocks=tuple(args.share_blocks),
        max_block_idx=args.max_block_idx, use_mask=args.use_mask, anchor=args.anchor,
        num_chunks=args.num_chunks, pad=args.pad, dtype=args.dtype,
        vae_tiling=args.vae_tiling, compile=args.compile)


def inputs_from_args(args: argparse.Namespace) -> JobInputs:
    prompt = args.prompt if args.prompt is not None else read_prompt_file(args.prompt_file)
    return JobInputs(image=args.image, pose=args.pose, hand=args.hand, prompt=prompt)


def budget_from_args(args: argparse.Namespace) -> Budget:
    return parse_budget(args.budget)
