"""Checking the new-project and new-session forms; every message says what to fix.

Rules come from the engine's own pure helpers (`find_keyword`) and, for
sessions, from the command layer (`sessions.commands.check_new_session`), so the
form and `posegen session new` explain problems alike.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.prompt import PromptError, clean_prompt, find_keyword, read_prompt_file
from engine.settings import DEFAULT_FRAMING, JobSettings
from engine.settings import FRAMINGS as ENGINE_FRAMINGS
from sessions.commands import NewSession, session_problems

CKPT_ENV = "POSEGEN_CKPT_PATH"
# -s / -b by framing of the reference image, as the form shows them.
FRAMINGS: dict[str, tuple[str, str]] = {
    name: (" ".join(map(str, steps)), " ".join(map(str, blocks)))
    for name, (steps, blocks) in ENGINE_FRAMINGS.items()}
# The form's fields start at the command layer's defaults (the spec's, in JobSettings).
_NEW = NewSession(project="", settings=JobSettings())
SESSION_DEFAULTS: dict[str, str] = {
    "name": "", "device": _NEW.device, "gpus": _NEW.gpus, "budget": _NEW.budget,
    "cfg": f"{_NEW.settings.cfg_scale:g}",
    **{k: str(getattr(_NEW.settings, k)) for k in
       ("steps", "seed", "height", "width", "frames", "head", "tail", "anchor")}}


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
    def field(key: str) -> str:
        return (values.get(key) or "").strip()

    v = ProjectValues(name=field("name"), image=field("image"), pose=field("pose"),
                      hand=field("hand"), prompt=field("prompt"), framing=field("framing"),
                      sapiens=field("sapiens"), driving=field("driving"))
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


def _pair(problems: list[str], values: dict[str, str], key: str, flag: str
          ) -> tuple[int, int] | None:
    parts = (values.get(key) or "").replace(",", " ").split()
    if len(parts) != 2 or not all(re.fullmatch(r"\d+", p) for p in parts):
        problems.append(f"{flag} {values.get(key)!r}: write two whole numbers START END, "
                        "e.g. 0 2")
        return None
    return int(parts[0]), int(parts[1])


def check_session(project: dict, values: dict[str, str]) -> NewSession:
    """The form as a `NewSession`; raises FormError listing every problem at once.

    What does not parse is reported here (and the spec's default stands in for it, so
    the rest is still checked); what the values mean (sizes, steps, the checkpoint,
    the chunk plan) is checked by the command layer, as for `posegen session new`.
    """
    problems: list[str] = []
    ints = {k: _int(problems, values, k, k) for k in
            ("steps", "seed", "height", "width", "frames", "head", "tail", "anchor")}
    defaults = JobSettings()
    try:
        cfg = float(values.get("cfg") or "")
    except ValueError:
        problems.append(f"cfg: {values.get('cfg')!r} is not a number (e.g. 5)")
        cfg = defaults.cfg_scale
    steps = _pair(problems, values, "share_steps", "-s") or defaults.share_steps
    blocks = _pair(problems, values, "share_blocks", "-b") or defaults.share_blocks
    gpus = (values.get("gpus") or "").strip()
    if gpus and gpus != "cpu" and not re.fullmatch(r"\d+(\s*,\s*\d+)*", gpus):
        problems.append(f"gpus {gpus!r}: write GPU indices like 0 or 0,1,2")
    ckpt = (values.get("ckpt") or "").strip()
    if not ckpt:
        problems.append(f"checkpoint: give the checkpoint dir (or set ${CKPT_ENV})")
    n = {k: getattr(defaults, k) if v is None else v for k, v in ints.items()}
    settings = JobSettings(
        height=n["height"], width=n["width"], frames=n["frames"], head=n["head"],
        tail=n["tail"], steps=n["steps"], cfg_scale=cfg, seed=n["seed"], anchor=n["anchor"],
        share_steps=steps, share_blocks=blocks)
    new = NewSession(project.get("id", project["name"]), settings,
                     ckpt=Path(ckpt).expanduser() if ckpt else None,
                     device=(values.get("device") or "cpu").strip(),
                     budget=(values.get("budget") or "none").strip(),
                     gpus=gpus.replace(" ", ""), name=(values.get("name") or "").strip() or None)
    problems += session_problems(project, new, checkpoint=bool(ckpt))
    if problems:
        raise FormError(problems)
    return new
