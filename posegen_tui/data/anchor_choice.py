"""What the anchor-choice screen shows of a preview: its base chunks, a frame of each and
how still each one's background is (engine/stability.py, written in each done.json)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from posegen_tui.data.chunk_files import THUMB_MAX_PX, open_frames, shrink
from posegen_tui.data.store_access import opened
from sessions.control import workspace_of


@dataclass(frozen=True)
class Candidate:
    """A base chunk of the preview that could anchor the full session."""

    idx: int
    status: str
    motion: float | None = None  # background change per frame, uint8 levels
    thumb: np.ndarray | None = None  # the chunk's middle frame, H x W x 3


@dataclass(frozen=True)
class AnchorChoice:
    preview_id: int
    project: str
    framing: str
    anchor: int  # the preview's own anchor
    full: dict = field(default_factory=dict)  # the full run's settings
    candidates: list[Candidate] = field(default_factory=list)
    problem: str = ""  # why nothing can be chosen here

    @property
    def suggested(self) -> int | None:
        """The done chunk whose background moves least."""
        scored = [c for c in self.candidates if c.motion is not None]
        return min(scored, key=lambda c: c.motion or 0.0).idx if scored else None

    def candidate(self, idx: int | None) -> Candidate | None:
        return next((c for c in self.candidates if c.idx == idx), None)


def load_anchor_choice(home: Path, session_id: int) -> AnchorChoice:
    with opened(home) as store:
        s = store.get_session(session_id)
        project = store.get_project(s["project_id"])
        chunks = store.chunks(session_id)
    framing = project.get("framing") or "half-body"
    base = AnchorChoice(session_id, project["name"], framing, int(s.get("anchor") or 0),
                        s["settings"].get("full", {}))
    if s.get("kind") != "preview":
        return replace(base, problem=f"session {session_id} is not a preview; make one with "
                                   "p in the new-session form or `posegen session new "
                                   "PROJECT --preview`")
    if not chunks:
        return replace(base, problem="the preview has not started: s starts it")
    ws = workspace_of(s)
    out = []
    for c in chunks:
        if c["role"] not in ("anchor", "base"):
            continue
        motion, thumb = None, None
        if c["status"] == "done" and ws is not None:
            try:
                motion = ws.done_record(c["idx"]).get("extra", {}).get("background_motion")
                frames = open_frames(ws.frames(c["idx"]))
                thumb = shrink(np.asarray(frames[len(frames) // 2]), THUMB_MAX_PX)
            except (OSError, ValueError):
                pass  # a chunk retried meanwhile: shown without its frame
        out.append(Candidate(c["idx"], c["status"], motion, thumb))
    return replace(base, candidates=out)

