"""`posegen prompt`, `posegen check` and `posegen prepare` (registered by engine.cli)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.inputs.errors import InputError
from engine.prompt import PromptError


def add_input_commands(sub: argparse._SubParsersAction) -> None:
    from engine.settings import JobSettings

    defaults = JobSettings()

    p = sub.add_parser("prompt", help="describe a reference image with Qwen2.5-VL (prompt draft)")
    p.add_argument("image", type=Path, help="the reference image")
    p.add_argument("--model", help="local Qwen2.5-VL-7B-Instruct folder "
                                   "(default: $QWEN25_VL_7B_INSTRUCT_PATH)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--ckpt", help="PoseGen checkpoint: also report the keyword's token "
                                  "position (default: $POSEGEN_CKPT_PATH if set)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--max-new-tokens", type=int, default=300)
    p.add_argument("--sample", action="store_true",
                   help="seeded sampling instead of greedy decoding")
    p.add_argument("--out", type=Path, help="also write the prompt to this file (for editing "
                                            "and --prompt-file)")
    p.set_defaults(func=cmd_prompt)

    c = sub.add_parser("check", help="check a job's inputs against each other before a run")
    c.add_argument("--image", type=Path, required=True, help="reference image")
    c.add_argument("--pose", type=Path, required=True, help="pose video (or Sapiens pose.pkl)")
    c.add_argument("--hand", type=Path, required=True,
                   help="hand video (or Sapiens normal.npy with seg.npy beside it)")
    c.add_argument("--driving", type=Path, help="the driving video the clips came from")
    c.add_argument("--frames", type=int, default=defaults.frames, help="frames per chunk N")
    c.add_argument("--head", type=int, default=defaults.head)
    c.add_argument("--tail", type=int, default=defaults.tail)
    c.add_argument("--height", type=int, default=defaults.height,
                   help="video height in pixels, a multiple of 16")
    c.add_argument("--width", type=int, default=defaults.width,
                   help="video width in pixels, a multiple of 16")
    c.add_argument("--no-pad", action="store_false", dest="pad",
                   help="check as for a run with padding off")
    c.set_defaults(func=cmd_check)

    r = sub.add_parser("prepare", help="render pose.mp4 and hand.mp4 (+ previews) from Sapiens "
                                       "outputs of a driving video")
    r.add_argument("--sapiens", type=Path, required=True,
                   help="folder with pose.pkl, normal.npy and seg.npy")
    r.add_argument("--driving", type=Path, required=True, help="the driving video")
    r.add_argument("--out", type=Path, required=True, help="output folder")
    r.add_argument("--release-colors", action="store_true",
                   help="swap red and blue in the skeleton as the release's files do")
    r.set_defaults(func=cmd_prepare)


def cmd_prompt(args: argparse.Namespace) -> int:
    from engine.atomic import atomic_write_text
    from engine.inputs.describe import describe_image, resolve_model_dir
    from engine.inputs.prompt_check import check_prompt
    from engine.media import read_image

    model_dir = resolve_model_dir(args.model)
    read_image(args.image)  # fail before loading 16 GB of weights
    text = describe_image(args.image, model_dir, device=args.device, seed=args.seed,
                          max_new_tokens=args.max_new_tokens, sample=args.sample)
    print(text, flush=True)
    if args.out is not None:
        atomic_write_text(args.out, text + "\n")
    try:
        report = check_prompt(text, args.ckpt)
    except PromptError as exc:
        where = (f" It is saved in {args.out}: edit it there, then pass --prompt-file "
                 f"{args.out}." if args.out else " Edit the text above and pass it as --prompt.")
        raise PromptError(f"the generated prompt was refused: {exc}.{where}") from exc
    token = "" if report.token is None else f", umT5 token {report.token}"
    print(f"keyword: {report.keyword} (character {report.char}{token})", file=sys.stderr)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from engine.inputs.validate import validate_inputs

    try:
        warnings = validate_inputs(args.image, args.pose, args.hand, args.driving,
                                   frames=args.frames, height=args.height, width=args.width,
                                   pad=args.pad, head=args.head, tail=args.tail)
    except InputError as exc:
        for problem in exc.problems:
            print(f"error: {problem}")
        print(f"{len(exc.problems)} problem(s): fix them before generating")
        return 2
    for warning in warnings:
        print(f"warning: {warning}")
    print("ok: the inputs fit together" + (f" ({len(warnings)} warning(s))" if warnings else ""))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from engine.inputs.pose_render import PoseStyle
    from engine.inputs.prepare import prepare_inputs

    style = PoseStyle(swap_red_blue=args.release_colors)
    done = prepare_inputs(args.sapiens, args.driving, args.out, style=style,
                          on_written=lambda path: print(f"wrote {path}", flush=True))
    print(f"{done.frames} frames at {done.fps:g} fps. Next: posegen check --image REF.png "
          f"--pose {done.pose} --hand {done.hand} --driving {args.driving}")
    return 0
