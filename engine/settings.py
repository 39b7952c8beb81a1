"""A job's settings, the `-p` budget and the kv-share settings: plain data, no torch.

The CLI, the session store and the app read and validate settings through this module
without loading the models; `engine.job`, `engine.budget` and `engine.kv_share`
re-export what they always offered.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from engine.chunk_plan import ChunkSpec
from engine.errors import BudgetError, JobError

VAE_TILINGS = ("release", "none")
# --compile: auto (compiled DiT blocks on CUDA, eager on CPU), on, off (engine/compiler.py).
COMPILE_MODES = ("auto", "on", "off")

_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9, "t": 10**12}
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"


AUTO = "auto"
Budget = int | str | None  # a parameter count, AUTO, or None (no limit)

def parse_budget(text: str | int | None) -> Budget:
    """Parse `-p`: `none` (everything resident), `auto`, `4e9`, `4G`, `4*10**9`, `4000000000`.

    Returns a parameter count, AUTO, or None for no limit.
    """
    if text is None or isinstance(text, int):
        return text
    s = text.strip().lower().replace("_", "").replace(",", "")
    if s in ("none", "all", "inf"):
        return None
    if s == AUTO:
        return AUTO
    m = re.fullmatch(_NUMBER + r"\s*\*\s*10\s*\*\*\s*(\d+)", s)
    if m:
        # float() parses any exponent (huge ones give inf); 10 ** int(...) could overflow
        # the float conversion or take forever on a long exponent.
        return _whole(float(f"{m.group(1)}e{m.group(2)}"), text)
    m = re.fullmatch(_NUMBER + r"(?:e(\d+))?\s*([kmgbt]?)", s)
    if m:
        value = float(f"{m.group(1)}e{m.group(2) or 0}") * _SUFFIX[m.group(3)]
        return _whole(value, text)
    raise BudgetError(f"-p {text!r}: not a parameter count; write e.g. 4e9, 4G, 4*10**9, "
                      "4000000000, auto (fit the free GPU memory) or none (all parameters "
                      "on the GPU)")


def _whole(value: float, text: str) -> int:
    if value < 0:
        raise BudgetError(f"-p {text!r}: the budget cannot be negative")
    if not math.isfinite(value):
        raise BudgetError(f"-p {text!r}: too large; write none for no limit")
    return int(round(value))


@dataclass(frozen=True)
class ShareSettings:
    steps: tuple[int, int] = (0, 2)
    blocks: tuple[int, int] = (34, 40)
    max_block_idx: int = 10
    use_mask: bool = True

    def share_step(self, step: int) -> bool:
        return self.steps[0] <= step < self.steps[1]

    def share_block(self, block: int) -> bool:
        return self.blocks[0] <= block < self.blocks[1]

    def validate(self, num_steps: int, num_layers: int) -> None:
        s0, s1 = self.steps
        b0, b1 = self.blocks
        if not 0 <= s0 < s1 <= num_steps:
            raise ValueError(f"-s {s0} {s1}: share steps must satisfy 0 <= start < end <= "
                             f"{num_steps} (the number of sampling steps)")
        if not 0 <= b0 < b1 <= num_layers:
            raise ValueError(f"-b {b0} {b1}: share blocks must satisfy 0 <= start < end <= "
                             f"{num_layers} (the DiT's number of blocks)")


# -s / -b by the framing of the reference image (the release's README table).
FRAMINGS: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "close-up": ((0, 1), (34, 40)), "half-body": ((0, 2), (34, 40)),
    "full-body": ((0, 4), (32, 40)), "distant": ((0, 4), (30, 40))}
DEFAULT_FRAMING = "half-body"
MAX_SIDE = 4096
_DEVICE = re.compile(r"^(cpu|cuda|cuda:\d{1,3})$")


def parse_device(text: str) -> str:
    """A torch device string workers accept: cpu, cuda or cuda:N (never evaluated)."""
    value = text.strip()
    if not _DEVICE.match(value):
        raise JobError(f"--device {text!r}: use cpu, cuda or cuda:N (N the GPU index, as "
                       "nvidia-smi numbers them)")
    return value


@dataclass(frozen=True)
class JobInputs:
    image: Path
    pose: Path
    hand: Path
    prompt: str


@dataclass(frozen=True)
class JobSettings:
    height: int = 1280
    width: int = 720
    frames: int = 81
    head: int = 21
    tail: int = 20
    steps: int = 25
    cfg_scale: float = 5.0
    shift: float = 5.0
    seed: int = 42
    share_steps: tuple[int, int] = (0, 2)
    share_blocks: tuple[int, int] = (34, 40)
    max_block_idx: int = 10
    use_mask: bool = True
    anchor: int = 0
    num_chunks: int | None = None
    pad: bool = True
    dtype: str = "auto"        # auto: bfloat16 on GPU, float32 on CPU
    # "release": condition clips and decodes tiled as the release does (ENGINE-SPEC 10);
    # "none": one pass over the whole frame, faster but not the release's numbers.
    vae_tiling: str = "release"
    # Compiled DiT blocks (engine/compiler.py): "auto" (on CUDA), "on" or "off". How the
    # numbers are computed, not which: within float noise of eager, like the device or the
    # attention kernel, so it is not part of the run's fingerprint (a workspace can be
    # resumed with another setting). Each chunk's saved steps record whether they were
    # compiled, and a chunk never mixes the two (engine/job.py).
    compile: str = "auto"

    @property
    def spec(self) -> ChunkSpec:
        return ChunkSpec(self.frames, self.head, self.tail)

    @property
    def share(self) -> ShareSettings:
        (s0, s1), (b0, b1) = self.share_steps, self.share_blocks  # lists, from JSON
        return ShareSettings((s0, s1), (b0, b1), self.max_block_idx, self.use_mask)

    def validate(self) -> None:
        """Raise the first problem (a JobError/ChunkPlanError naming the value and the fix)."""
        self.spec.validate()
        problems = self.problems()
        if problems:
            raise JobError(problems[0])

    def problems(self) -> list[str]:
        """Every problem of these settings, one line each (a form shows them all at once)."""
        out: list[str] = []
        try:
            self.spec.validate()
        except ValueError as e:
            out.append(str(e))
        for name, v in (("--height", self.height), ("--width", self.width)):
            if v < 16 or v % 16:
                out.append(f"{name} {v}: must be a positive multiple of 16 "
                           "(VAE 8x times DiT patch 2)")
            elif v > MAX_SIDE:
                out.append(f"{name} {v}: at most {MAX_SIDE} (the release runs 1280x720; "
                           "attention cost grows with the square of the pixel count)")
        if not math.isfinite(self.cfg_scale) or self.cfg_scale < 0:
            out.append(f"--cfg {self.cfg_scale}: must be a finite number >= 0 (the release "
                       "uses 5; 1 turns the negative prompt off)")
        if not math.isfinite(self.shift) or self.shift <= 0:
            out.append(f"--shift {self.shift}: must be a finite number > 0 (default 5)")
        if self.steps < 1:
            out.append(f"--steps {self.steps}: need at least one sampling step")
        s0, s1 = self.share_steps
        if self.steps >= 1 and not 0 <= s0 < s1 <= self.steps:
            out.append(f"-s {s0} {s1}: the anchor's shared steps must lie within the "
                       f"{self.steps} sampling steps (0 <= start < end <= {self.steps}); "
                       f"pass e.g. -s 0 {min(2, self.steps)} or more --steps")
        if self.anchor < 0 or self.anchor % 2:
            out.append(f"--anchor {self.anchor}: the anchor must be an even (base) chunk: "
                       "0, 2, 4, ...")
        if self.vae_tiling not in VAE_TILINGS:
            out.append(f"--vae-tiling {self.vae_tiling}: choose one of "
                       f"{', '.join(VAE_TILINGS)}")
        if self.compile not in COMPILE_MODES:
            out.append(f"--compile {self.compile}: choose one of {', '.join(COMPILE_MODES)}")
        return out

    def torch_dtype(self, device: str) -> Any:
        """The torch dtype of this run on ``device`` (imports torch)."""
        import torch

        name = self.dtype
        if name == "auto":
            name = "float32" if torch.device(device).type == "cpu" else "bfloat16"
        try:
            return {"float32": torch.float32, "bfloat16": torch.bfloat16,
                    "float16": torch.float16}[name]
        except KeyError:
            raise JobError(f"--dtype {self.dtype}: use auto, float32, bfloat16 or float16"
                           ) from None


def settings_to_json(settings: JobSettings) -> dict[str, Any]:
    """A session row's copy of its settings (tuples as lists)."""
    d = asdict(settings)
    d["share_steps"] = list(settings.share_steps)
    d["share_blocks"] = list(settings.share_blocks)
    return d


def settings_from_json(raw: dict[str, Any]) -> JobSettings:
    """Settings back from a session row; keys of older or newer versions are ignored."""
    known = {f.name for f in fields(JobSettings)}
    values = {k: v for k, v in raw.items() if k in known}
    for key in ("share_steps", "share_blocks"):
        if key in values:
            values[key] = tuple(values[key])
    return JobSettings(**values)
