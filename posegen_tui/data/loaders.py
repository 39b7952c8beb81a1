"""Snapshots of the store for the screens. Run on worker threads, never on the UI thread."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.chunk_plan import ChunkPlanError, ChunkSpec, make_plan
from posegen_tui.data.chunk import Chunk
from posegen_tui.data.chunk_files import ChunkFiles, load_chunk_files
from posegen_tui.data.log_tail import tail_lines
from posegen_tui.data.media_info import frame_count
from posegen_tui.data.store_access import opened
from posegen_tui.data.tuning import Point, points_from_chunks
from sessions.control import (
    ACTIVE_STATES,
    effective_state,
    log_path,
    running_phases,
    workspace_of,
)
from sessions.eta import eta_of
from sessions.store import Store

EVENTS = 40
LOG_LINES = 60
TINY_MARK = "README-TINY.txt"  # written by `posegen ckpt make-tiny`: random weights


def _state(store: Store, session: dict) -> str:
    # effective_state costs a few queries; only sessions that claim to run need it.
    if session["state"] in ACTIVE_STATES:
        return effective_state(store, session["id"])
    return session["state"]


# -- projects screen ---------------------------------------------------------------

@dataclass(frozen=True)
class ProjectsData:
    projects: list[dict]  # project rows, each with "sessions": session rows + "view_state"
    loaded_at: float


def load_projects(home: Path, include_archived: bool = False) -> ProjectsData:
    with opened(home) as store:
        projects = store.list_projects(include_archived=include_archived)
        by_project: dict[int, list[dict]] = {p["id"]: [] for p in projects}
        for s in store.list_sessions(include_archived=include_archived):
            s["view_state"] = _state(store, s)
            by_project.setdefault(s["project_id"], []).append(s)
        for p in projects:
            p["sessions"] = by_project.get(p["id"], [])
    return ProjectsData(projects, time.time())


# -- session screen ----------------------------------------------------------------

@dataclass(frozen=True)
class SessionData:
    session: dict
    project: dict
    state: str
    chunks: list[Chunk]
    workers: list[dict]
    events: list[dict]
    log_lines: list[str]
    log_file: str
    eta_seconds: float | None
    tiny_ckpt: bool
    loaded_at: float
    files: ChunkFiles | None = None  # of the selected chunk
    plan_note: str = ""
    video: str | None = None  # as shown: relative to $POSEGEN_HOME when under it
    video_path: str | None = None  # absolute, to copy or open
    extra: dict = field(default_factory=dict)
    # Running chunks: (phase, seconds in it), e.g. ("loading", 42.0).
    phases: dict[int, tuple[str, float]] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return sum(c.status == "done" for c in self.chunks if not c.planned)

    def chunk(self, idx: int | None) -> Chunk | None:
        return next((c for c in self.chunks if c.idx == idx), None)


def planned_chunks(session: dict, project: dict) -> tuple[list[Chunk], str]:
    """A created session has no chunk rows yet: show its plan (pure arithmetic)."""
    s = session.get("settings") or {}
    frames = frame_count(project["pose"])
    if frames is None:
        return [], "no chunk plan: the pose clip cannot be read"
    try:
        plan = make_plan(frames, ChunkSpec(s.get("frames", 81), s.get("head", 21),
                                           s.get("tail", 20)),
                         s.get("num_chunks"), s.get("anchor", 0), s.get("pad", True))
    except ChunkPlanError as e:
        return [], f"no chunk plan: {e}"
    steps = s.get("steps") or session.get("steps")
    return [Chunk(idx=c.index, role=c.role, start=c.start, end=c.end, status="pending",
                  steps=steps, deps=plan.dependencies(c.index), planned=True)
            for c in plan.chunks], "planned: the first worker stores these chunks"


def load_session(home: Path, session_id: int, selected: int | None = None) -> SessionData:
    with opened(home) as store:
        session = store.get_session(session_id)
        project = store.get_project(session["project_id"])
        state = _state(store, session)
        rows = store.chunks(session_id)
        phases = running_phases(store, session_id, rows)
        chunks = [Chunk.from_row(r, phases.get(r["idx"])) for r in rows]
        workers = store.workers(session_id)
        events = store.events(session_id, limit=1_000_000)[-EVENTS:]
        eta = eta_of(store, session_id, rows, sum(1 for w in workers if w["alive"]))
    note = ""
    if not chunks:
        chunks, note = planned_chunks(session, project)
    log = log_path(session_id, 0, home)
    workspace = workspace_of(session)
    chosen = next((c for c in chunks if c.idx == selected), None)
    files = load_chunk_files(workspace, chosen.idx, chosen.role) if chosen else None
    video = workspace.video if workspace is not None else None
    return SessionData(
        session=session, project=project, state=state, chunks=chunks, workers=workers,
        events=events, log_lines=tail_lines(log, LOG_LINES), log_file=log.name,
        eta_seconds=eta if state in ACTIVE_STATES else None,
        tiny_ckpt=(Path(session.get("ckpt") or "/nonexistent") / TINY_MARK).is_file(),
        loaded_at=time.time(), files=files, plan_note=note, phases=phases,
        video=_shown_path(video, home) if video is not None and video.is_file() else None,
        video_path=str(video.resolve()) if video is not None and video.is_file() else None)


def _shown_path(path: Path, home: Path) -> str:
    """Paths under $POSEGEN_HOME are shown relative to it (short, and the same anywhere)."""
    try:
        return str(path.relative_to(home))
    except ValueError:
        return str(path)


# -- GPU panel ---------------------------------------------------------------------

@dataclass(frozen=True)
class WorkerUse:
    """A live worker's own memory numbers, from its heartbeat row."""

    session_id: int
    project: str
    budget: str | None
    worker: dict


def load_gpu_side(home: Path, since: float | None, nodes_since: float | None = None
                  ) -> tuple[list[WorkerUse], list[dict], list[dict]]:
    """Live workers of every session, this host's GPU samples since ``since``, and the
    latest sample of every host's devices since ``nodes_since`` (several hosts: a Ray
    cluster's nodes)."""
    uses: list[WorkerUse] = []
    with opened(home) as store:
        for s in store.list_sessions(include_archived=True):
            if s["state"] not in ACTIVE_STATES:
                continue
            for w in store.workers(s["id"], live_only=True):
                uses.append(WorkerUse(s["id"], s["project_name"], s.get("budget"), w))
        samples = store.gpu_samples(host=socket.gethostname(), since=since)
        latest = store.latest_gpu_samples(since=nodes_since)
    return uses, samples, latest


# -- budget screen -----------------------------------------------------------------

@dataclass(frozen=True)
class BudgetData:
    project: dict
    points: list[Point]
    sessions: int


def load_budget(home: Path, project_id: int) -> BudgetData:
    with opened(home) as store:
        project = store.get_project(project_id)
        sessions = store.list_sessions(project_id, include_archived=True)
        points: list[Point] = []
        for s in sessions:
            points += points_from_chunks(s, store.chunks(s["id"]))
    return BudgetData(project, points, len(sessions))
