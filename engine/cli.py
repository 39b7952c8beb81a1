"""`posegen`: the engine's command line (generate, tiny checkpoint, sample inputs, input prep)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.checkpoint.layout import CheckpointError
from engine.chunk_plan import ChunkPlanError
from engine.errors import BudgetError, CacheMismatchError, JobError, MediaError
from engine.inputs.errors import InputError
from engine.prompt import PromptError

# Errors a user can fix: printed as one line, no traceback.
USER_ERRORS = (BudgetError, CheckpointError, ChunkPlanError, JobError, CacheMismatchError,
               MediaError, PromptError, InputError, FileNotFoundError, PermissionError,
               NotADirectoryError)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; each option's help ends with its default, when it has one
    worth saying (not None, not a flag's True/False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or default is None or default == argparse.SUPPRESS \
                or isinstance(default, bool) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose subcommands (at any depth) use `HelpFormatter`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def version_text() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"posegen {version('posegen-tui')}"
    except PackageNotFoundError:  # run from a source tree without installing
        return "posegen (not installed: pip install -e .)"


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="posegen", description=__doc__)
    p.add_argument("--version", action="version", version=version_text())
    add_engine_commands(p.add_subparsers(dest="command", required=True))
    return p


def add_engine_commands(sub: argparse._SubParsersAction) -> None:
    from engine.cli_options import add_generation_options
    from engine.inputs.cli import add_input_commands

    g = sub.add_parser("generate", help="generate a long video in this process (resumable)")
    g.add_argument("--ckpt", help="checkpoint dir (default: $POSEGEN_CKPT_PATH)")
    g.add_argument("--out", type=Path, required=True, help="output/workspace directory")
    g.add_argument("--restart", action="store_true",
                   help="discard the chunks already in --out and start over")
    add_generation_options(g)
    g.set_defaults(func=cmd_generate)

    c = sub.add_parser("ckpt", help="checkpoint tools")
    csub = c.add_subparsers(dest="ckpt_command", required=True)
    t = csub.add_parser("make-tiny", help="write a tiny random-weight checkpoint (for tests/demo)")
    t.add_argument("dir", type=Path)
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=cmd_make_tiny)
    from engine.checkpoint.full_cli import add_make_full_parser

    add_make_full_parser(csub)  # `posegen ckpt make-full`: full-size random weights

    s = sub.add_parser("sample-inputs", help="write a synthetic reference image + pose/hand clips")
    s.add_argument("dir", type=Path)
    s.add_argument("--frames", type=int, default=300)
    s.add_argument("--fps", type=float, default=30.0)
    s.add_argument("--height", type=int, default=640,
                   help="video height in pixels, a multiple of 16")
    s.add_argument("--width", type=int, default=360,
                   help="video width in pixels, a multiple of 16")
    s.set_defaults(func=cmd_sample_inputs)

    add_input_commands(sub)  # prompt, check, prepare


def cmd_generate(args: argparse.Namespace) -> int:
    from engine.cli_options import budget_from_args, inputs_from_args, settings_from_args
    from engine.cli_progress import ProgressPrinter
    from engine.job import Job

    printer = ProgressPrinter()
    job = Job(args.out, inputs_from_args(args), settings_from_args(args), ckpt=args.ckpt,
              device=args.device, budget=budget_from_args(args), progress=printer)
    try:
        video = job.run(restart=args.restart)
    except KeyboardInterrupt:
        print(f"\nposegen: {printer.stopped_message()}", file=sys.stderr)
        return 130
    print(video)
    return 0


def cmd_make_tiny(args: argparse.Namespace) -> int:
    from engine.checkpoint.tiny import make_tiny

    make_tiny(args.dir, seed=args.seed)
    print(f"tiny checkpoint (RANDOM weights) written to {args.dir}")
    return 0


def cmd_sample_inputs(args: argparse.Namespace) -> int:
    from engine.sample_inputs import write_sample_inputs

    paths = write_sample_inputs(args.dir, frames=args.frames, fps=args.fps, height=args.height,
                                width=args.width)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None,
                user_errors: tuple[type[BaseException], ...] = USER_ERRORS) -> int:
    """Parse and run; errors a user can fix become one line and exit code 2."""
    from engine.compat import configure_cuda_allocator

    configure_cuda_allocator()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except user_errors as e:
        print(f"posegen: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nposegen: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
