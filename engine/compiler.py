"""Compiled DiT blocks (`torch.compile`): whether to compile, the compiler's cache, the code.

What is compiled: the five tensor stages of a DiT block (engine/models/dit.py,
`BlockStages`): the modulation, norms, q/k/v projections and RoPE before self-attention,
the output projections and float32 residuals after it, the cross-attention projections,
and the FFN. Each stage is compiled once per process and shape; every block of both DiTs
runs that code (the block is an argument, its weights inputs: regional compilation).
The attention kernels and the KV-sharing hooks stay eager between the stages, so hooks
that write or read the anchor cache, sync the host or branch on Python state never sit
inside a graph.

Compiled arithmetic is not eager arithmetic: the fused float32 work rounds differently,
within bf16 noise. It is deterministic: the compiler runs in its deterministic mode (no
on-device benchmarking that could pick a different reduction order) and keeps eager's
casts to the compute dtype, so two compiled runs, and a compiled chunk resumed after a
kill, give the same bits. A chunk's saved steps say whether they were compiled
(engine/job.py): a resume never mixes eager and compiled steps in one chunk.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import JobError
from engine.settings import COMPILE_MODES

if TYPE_CHECKING:
    import torch

    from engine.models.dit import BlockStages

# Overrides the job's setting (auto, on, off): a way to run an existing session's
# workers eager (or compiled) without a new session.
COMPILE_ENV = "POSEGEN_COMPILE"
# Where the compiler's cache goes, if set; else $POSEGEN_HOME/cache/torch-compile; else
# $TORCHINDUCTOR_CACHE_DIR if set; else the user's cache dir (posegen/torch-compile).
CACHE_ENV = "POSEGEN_COMPILE_CACHE"
# Inductor options for the block stages (see the module's docstring). Deterministic mode
# fixes reduction configs by heuristics instead of timing them on the device (which could
# pick another summation order in another process); POSEGEN_COMPILE_DETERMINISTIC=0 turns
# it off, to measure what it costs.
INDUCTOR_OPTIONS: dict[str, Any] = {"deterministic": True, "emulate_precision_casts": True}
DETERMINISTIC_ENV = "POSEGEN_COMPILE_DETERMINISTIC"

_stages: BlockStages | None = None


@dataclass(frozen=True)
class CompileDecision:
    """Whether a DiT's blocks run compiled, and in words why (or why not)."""

    compiled: bool
    reason: str


def requested_mode(mode: str) -> str:
    """The job's compile setting, unless $POSEGEN_COMPILE overrides it."""
    override = os.environ.get(COMPILE_ENV, "").strip().lower()
    if override:
        if override not in COMPILE_MODES:
            raise JobError(f"{COMPILE_ENV}={override!r}: choose one of "
                           f"{', '.join(COMPILE_MODES)}")
        return override
    return mode


def unavailable_reason(device: torch.device | str) -> str | None:
    """Why ``torch.compile`` cannot compile for ``device`` here; None if it can."""
    import torch

    kind = torch.device(device).type
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    try:
        from torch._dynamo.eval_frame import is_dynamo_supported

        if not is_dynamo_supported():
            return f"torch.compile does not support this Python (torch {torch.__version__})"
    except ImportError:
        pass
    if kind == "cuda":
        if importlib.util.find_spec("triton") is None:
            return "triton is not installed (the compiler's GPU code generator)"
        return None
    if kind == "cpu":
        cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++") \
            or shutil.which("c++")
        if not cxx:
            return "no C++ compiler (g++ or clang++) on PATH; the compiler's CPU code needs one"
        return None
    return f"compiled blocks are not supported on {kind} devices"


def check_mode(mode: str, device: str) -> None:
    """Refuse ``--compile on`` where the compiler cannot run, before any model loads."""
    mode = requested_mode(mode)
    if mode not in COMPILE_MODES:
        raise JobError(f"--compile {mode}: choose one of {', '.join(COMPILE_MODES)}")
    if mode == "on":
        reason = unavailable_reason(device)
        if reason is not None:
            raise JobError(f"--compile on: {reason}; use --compile auto or --no-compile")


def decide(mode: str, device: torch.device | str, streamed_params: int) -> CompileDecision:
    """Compile a DiT's blocks under setting ``mode`` on ``device``?

    auto: on a CUDA device, when the compiler is available there; on: wherever the
    compiler runs (check_mode refuses it earlier where it cannot); off: never. Either way
    only when every DiT parameter is resident (``streamed_params`` 0): a `-p` budget that
    streams weights runs eager (its steps wait on host copies, which compiling cannot
    shorten, and the streaming wrappers change state inside a forward).
    """
    import torch

    setting = mode
    mode = requested_mode(mode)
    source = f"--compile {mode}" if mode == setting else f"{COMPILE_ENV}={mode}"
    kind = torch.device(device).type
    if mode == "off":
        return CompileDecision(False, f"off ({source})")
    if mode == "auto" and kind != "cuda":
        return CompileDecision(False, f"off on {kind} ({source} compiles on CUDA only)")
    if streamed_params:
        return CompileDecision(False, f"off: -p streams {streamed_params / 1e9:.2f} B "
                                      "parameters from host memory; compiled blocks need "
                                      "every block resident")
    reason = unavailable_reason(device)
    if reason is not None:
        if mode == "on":
            raise JobError(f"--compile on: {reason}; use --compile auto or --no-compile")
        return CompileDecision(False, f"off: {reason}")
    return CompileDecision(True, f"on ({source}), cache {cache_dir()}")


def cache_dir() -> Path:
    """Where the compiler keeps its cache (see CACHE_ENV)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("POSEGEN_HOME")  # set by the session layer for its workers
    if home:
        return Path(home).expanduser() / "cache" / "torch-compile"
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("posegen")) / "torch-compile"


def configure_cache() -> Path:
    """Point the compiler's on-disk caches at ``cache_dir()``; before the first compile.

    The FX graph cache (generated code) and the AOTAutograd cache are on, so a second
    worker, a resumed chunk or a new session at the same shapes loads the compiled code
    instead of generating it again; only the tracing is redone per process.
    """
    path = cache_dir()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")
    return path


def inductor_options() -> dict[str, Any]:
    """INDUCTOR_OPTIONS that this torch's inductor knows (older ones lack some)."""
    import torch._inductor.config as config

    options = dict(INDUCTOR_OPTIONS)
    if os.environ.get(DETERMINISTIC_ENV, "1").strip() == "0":
        options["deterministic"] = False
    return {k: v for k, v in options.items() if hasattr(config, k)}


def compiled_stages() -> BlockStages:
    """The block stages under `torch.compile`, made once per process (lazily: nothing
    compiles before the first call)."""
    global _stages
    if _stages is None:
        import torch

        from engine.models.dit import EAGER_STAGES, BlockStages

        configure_cache()
        options = inductor_options()

        def comp(fn: Any) -> Any:
            # dynamic=False: kernels specialised to the chunk's shapes, whatever shapes this
            # process compiled before, so a chunk's arithmetic never depends on history.
            return torch.compile(fn, dynamic=False, options=options)

        e = EAGER_STAGES
        _stages = BlockStages(comp(e.attn_in), comp(e.project_kv), comp(e.cross_in),
                              comp(e.cross_out), comp(e.ffn), compiled=True)
    return _stages


def compile_blocks(dit: Any) -> None:
    """Run every block of ``dit`` (a PoseGenDiT, placed) with the compiled stages.

    Layers wrapped for `-p` placement (diffsynth's VRAM layers, all resident here) are
    moved to their steady state first: their first forward otherwise changes their state
    inside the compiled code, which would compile the stages twice.
    """
    for m in dit.modules():
        if getattr(m, "state", None) == 1 and callable(getattr(m, "preparing", None)):
            m.preparing()
    dit.set_stages(compiled_stages())


def eager_blocks(dit: Any) -> None:
    from engine.models.dit import EAGER_STAGES

    dit.set_stages(EAGER_STAGES)
