"""Build the engine's Job for a stored session (the one place rows become a Job)."""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from engine.budget import parse_budget
from engine.job import Job, JobInputs, JobSettings
from engine.progress import ProgressCallback


def settings_to_json(settings: JobSettings) -> dict[str, Any]:
    d = asdict(settings)
    d["share_steps"] = list(settings.share_steps)
    d["share_blocks"] = list(settings.share_blocks)
    return d


def settings_from_json(raw: dict[str, Any]) -> JobSettings:
    known = {f.name for f in fields(JobSettings)}
    values = {k: v for k, v in raw.items() if k in known}
    for key in ("share_steps", "share_blocks"):
        if key in values:
            values[key] = tuple(values[key])
    return JobSettings(**values)


def job_for(session: dict[str, Any], project: dict[str, Any], device: str,
            progress: ProgressCallback | None = None) -> Job:
    inputs = JobInputs(image=Path(project["image"]), pose=Path(project["pose"]),
                       hand=Path(project["hand"]), prompt=project["prompt"])
    return Job(session["workspace"], inputs, settings_from_json(session["settings"]),
               ckpt=session["ckpt"], device=device, budget=parse_budget(session["budget"]),
               progress=progress)
