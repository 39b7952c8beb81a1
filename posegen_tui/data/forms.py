"""Checking the new-project and new-session forms; every message says what to fix.

Rules come from the engine's own pure helpers (`ChunkSpec.validate`,
`find_keyword`) so the form and `posegen session new` explain problems alike.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.chunk_plan import ChunkPlanError, ChunkSpec
from engine.prompt import PromptError, clean_prompt, find_keyword, read_prompt_file
from engine.settings import DEFAULT_FRAMING
from engine.settings import FRAMINGS as ENGINE_FRAMINGS
from posegen_tui.data.tuning import budget_params

CKPT_ENV = "POSEGEN_CKPT_PATH"
# -s / -b by framing of the reference image, as the form shows them.
FRAMINGS: dict[str, tuple[str, str]] = {
    name: (" ".join(map(str, steps)), " ".join(map(str, blocks)))
    for name, (steps, blocks) in ENGINE_FRAMINGS.items()}
SESSION_DEFAULTS: dict[str, str] = {
    "name": "", "device": "cpu", "gpus": "", "budget": "none", "steps": "25", "cfg": "5",
    "seed": "42", "height": "1280", "width": "720", "frames": "81", "head": "21",
    "tail": "20", "anchor": "0"}


class FormError(ValueError):
    """Problems found in a form: one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def session_defaults(project: dict) -> dict[str, str]:
    """The spec's defaults, -s/-b from the project's framing, ckpt from the environment."""
    steps, blocks = FRAMINGS[project.get("framing") or DEFAULT_FRAMING]
    return {**SESSION_DEFAULTS, "share_steps": steps, "share_blocks": blocks,
            "ckpt": os.environ.get(CKPT_ENV, "")}


def prompt_text(value: str) -> str:
    """The prompt field takes text, or the path of a prompt file."""
    value = value.strip()
    path = Path(value).expanduser()
    if value and "\n" not in value and len(value) < 4096 and path.is_file():
        return read_prompt_file(path)
    return value


# -- projects ----------------------------------------------------------------------

@dataclass
class ProjectValues:
    name: str
    image: str
    pose: str
    hand: str
    prompt: str
    framing: str = DEFAULT_FRAMING
    sapiens: str = ""  # a Sapiens folder + driving video instead of ready pose/hand clips
    driving: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def needs_prepare(self) -> bool:
        return bool(self.sapiens)


def check_project(values: dict[str, str]) -> ProjectValues:
    """Clean and check the new-project form (files exist, prompt names the subject).

    The motion comes either as ready clips (pose + hand) or as a Sapiens folder and
    its driving video (sapiens + driving), which `posegen prepare` renders into clips.
    """
    v = ProjectValues(**{k: (values.get(k) or "").strip() for k in
                         ("name", "image", "pose", "hand", "prompt", "framing", "sapiens",
                          "driving")})
    if not v.name:
        v.problems.append("name: give the project a name")
    clips, sapiens = bool(v.pose or v.hand), bool(v.sapiens or v.driving)
    if clips and sapiens:
        v.problems.append("inputs: fill either pose + hand (ready clips) or sapiens + driving "
                          "(a Sapiens folder and its driving video), not both; clear the "
                          "other pair")
        files: tuple[str, ...] = ("image",)
    elif not clips and not sapiens:
        v.problems.append("inputs: fill pose + hand (ready clips), or sapiens + driving "
                          "(a Sapiens folder with pose.pkl, normal.npy, seg.npy and its "
                          "driving video)")
        files = ("image",)
    else:
        files = ("image", "pose", "hand") if clips else ("image", "driving")
    for key in files:
        path = getattr(v, key)
        if not path:
            v.problems.append(f"{key}: required; give the path of the {key} file")
        elif not Path(path).expanduser().is_file():
            v.problems.append(f"{key}: {path} not found (missing file)")
        else:
            setattr(v, key, str(Path(path).expanduser().resolve()))
    if sapiens and not clips:
        folder = Path(v.sapiens).expanduser()
        if not v.sapiens:
            v.problems.append("sapiens: required with driving; give the Sapiens output folder "
                              "(pose.pkl, normal.npy, seg.npy)")
        elif not folder.is_dir():
            v.problems.append(f"sapiens: {v.sapiens} is not a folder (missing?)")
        else:
            v.sapiens = str(folder.resolve())
    try:
        v.prompt = prompt_text(v.prompt)
        if not v.prompt:
            v.problems.append("prompt: describe the reference image, naming the subject "
                              "(woman, girl, man or boy)")
        else:
            find_keyword(clean_prompt(v.prompt))
    except PromptError as e:
        v.problems.append(f"prompt: {e}")
    if v.framing not in FRAMINGS:
        v.problems.append(f"framing {v.framing!r}: use one of {', '.join(FRAMINGS)}")
    return v


# -- sessions ----------------------------------------------------------------------

def _int(problems: list[str], values: dict[str, str], key: str, label: str) -> int | None:
    text = (values.get(key) or "").strip()
    try:
        return int(text)
    except ValueError:
        problems.append(f"{label}: {text!r} is not a whole number")
        return None


def _pair(problems: list[str], values: dict[str, str], key: str, flag: str) -> list[str]:
    parts = (values.get(key) or "").replace(",", " ").split()
    if len(parts) != 2 or not all(re.fullmatch(r"\d+", p) for p in parts):
        problems.append(f"{flag} {values.get(key)!r}: write two whole numbers START END, "
                        "e.g. 0 2")
        return []
    if int(parts[0]) >= int(parts[1]):
        problems.append(f"{flag} {' '.join(parts)}: START must be less than END")
    return parts


def check_session(project: dict, values: dict[str, str]) -> list[str]:
    """Arguments for `posegen session new PROJECT ...`; raises FormError listing problems.

    Only checks that need no model or video: `posegen session new` then checks the
    checkpoint's files and plans the chunks, and its one-line error is shown as is.
    """
    problems: list[str] = []
    for key in ("image", "pose", "hand"):
        if not Path(project[key]).is_file():
            problems.append(f"project {key} {project[key]} is missing (moved or deleted); "
                            "create the project again with the file's new path")
    try:
        find_keyword(clean_prompt(project["prompt"]))
    except PromptError as e:
        problems.append(f"project prompt: {e}")
    ints = {k: _int(problems, values, k, k) for k in
            ("steps", "seed", "height", "width", "frames", "head", "tail", "anchor")}
    try:
        float(values.get("cfg") or "")
    except ValueError:
        problems.append(f"cfg: {values.get('cfg')!r} is not a number (e.g. 5)")
    if None not in (ints["frames"], ints["head"], ints["tail"]):
        try:
            ChunkSpec(ints["frames"], ints["head"], ints["tail"]).validate()
        except ChunkPlanError as e:
            problems.append(str(e))
    for key in ("height", "width"):
        v = ints[key]
        if v is not None and (v < 16 or v % 16):
            problems.append(f"--{key} {v}: must be a positive multiple of 16 "
                            "(VAE 8x times DiT patch 2)")
    if ints["steps"] is not None and ints["steps"] < 1:
        problems.append(f"--steps {ints['steps']}: need at least one sampling step")
    if ints["anchor"] is not None and (ints["anchor"] < 0 or ints["anchor"] % 2):
        problems.append(f"--anchor {ints['anchor']}: the anchor must be an even (base) "
                        "chunk: 0, 2, 4, ...")
    steps = _pair(problems, values, "share_steps", "-s")
    blocks = _pair(problems, values, "share_blocks", "-b")
    budget = (values.get("budget") or "none").strip()
    if budget.lower() not in ("none", "all", "inf", "auto") and budget_params(budget) is None:
        problems.append(f"-p {budget!r}: not a parameter count; write e.g. 4e9, 4G, 4*10**9 "
                        "or none (all parameters on the GPU)")
    device = (values.get("device") or "cpu").strip()
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        problems.append(f"device {device!r}: use cpu, cuda or cuda:N")
    gpus = (values.get("gpus") or "").strip()
    if gpus and gpus != "cpu" and not re.fullmatch(r"\d+(\s*,\s*\d+)*", gpus):
        problems.append(f"gpus {gpus!r}: write GPU indices like 0 or 0,1,2")
    ckpt = (values.get("ckpt") or "").strip()
    if not ckpt:
        problems.append(f"checkpoint: give the checkpoint dir (or set ${CKPT_ENV})")
    elif not Path(ckpt).expanduser().is_dir():
        problems.append(f"checkpoint: {ckpt} is not a folder (missing?)")
    if problems:
        raise FormError(problems)
    args = ["session", "new", str(project["name"]), "--json",
            "--ckpt", str(Path(ckpt).expanduser().resolve()), "--device", device,
            "-p", budget, "--cfg", str(float(values["cfg"])),
            "-s", *steps, "-b", *blocks]
    for key in ("steps", "seed", "height", "width", "frames", "head", "tail", "anchor"):
        args += [f"--{key}", str(ints[key])]
    if gpus:
        args += ["--gpus", gpus.replace(" ", "")]
    name = (values.get("name") or "").strip()
    if name:
        args += ["--name", name]
    return args
