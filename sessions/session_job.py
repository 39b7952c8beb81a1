"""Build the engine's Job for a stored session (the one place rows become a Job)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.budget import parse_budget
from engine.job import Job, JobInputs
from engine.progress import ProgressCallback
from engine.settings import settings_from_json, settings_to_json  # noqa: F401  (re-exported)


def job_for(session: dict[str, Any], project: dict[str, Any], device: str,
            progress: ProgressCallback | None = None) -> Job:
    inputs = JobInputs(image=Path(project["image"]), pose=Path(project["pose"]),
                       hand=Path(project["hand"]), prompt=project["prompt"])
    return Job(session["workspace"], inputs, settings_from_json(session["settings"]),
               ckpt=session["ckpt"], device=device, budget=parse_budget(session["budget"]),
               progress=progress)
