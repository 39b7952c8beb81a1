"""What people do to projects and sessions: one function per action, typed in and out.

The CLI and the app call these (the app on a worker thread); process control
(start, resume, pause, stop) lives beside them in `sessions.control`, and what
workers do to their chunks in `sessions.records`. Together they are the only
code that changes stored state (tests/test_architecture.py checks it).

Nothing here imports torch: settings, the chunk plan, the checkpoint's block
count and the clips' frame counts are read with torch-free helpers, so creating
a session answers in well under a second. Work that needs the engine (merging
frames, describing an image, rendering clips) runs in a child process through
`sessions.tasks`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.checkpoint.layout import (
    CheckpointLayout,
    check_layout,
    check_share_blocks,
    resolve_checkpoint_dir,
)
from engine.chunk_plan import ChunkPlan, make_plan
from engine.errors import JobError
from engine.preview import preview_settings
from engine.prompt import clean_prompt, find_keyword
from engine.settings import (
    JobSettings,
    parse_budget,
    parse_device,
    settings_from_json,
    settings_to_json,
)
from engine.video_meta import video_info
from engine.workspace import Workspace
from sessions.on_done import problem as on_done_problem
from sessions.paths import fresh_workspace
from sessions.store import Store, StoreError

# -- projects ------------------------------------------------------------------------

@dataclass(frozen=True)
class NewProject:
    name: str
    image: Path
    pose: Path
    hand: Path
    prompt: str
    framing: str
    driving: Path | None = None


def create_project(store: Store, new: NewProject) -> int:
    """Store a project after checking its prompt and that its clips fit together."""
    find_keyword(clean_prompt(new.prompt))
    paths = {"image": new.image, "pose": new.pose, "hand": new.hand, "driving": new.driving}
    for key, path in paths.items():
        if path is not None and not Path(path).is_file():
            raise JobError(f"--{key} {path}: file not found")
    pose_frames = video_info(new.pose)[0]
    hand_frames = video_info(new.hand)[0]
    if pose_frames != hand_frames:
        raise JobError(f"--hand {new.hand}: {hand_frames} frames, but --pose {new.pose} has "
                       f"{pose_frames}; render both from the same driving video")
    return store.create_project(
        new.name, image=str(Path(new.image).resolve()), pose=str(Path(new.pose).resolve()),
        hand=str(Path(new.hand).resolve()), prompt=new.prompt, framing=new.framing,
        driving=str(Path(new.driving).resolve()) if new.driving else None)


def delete_project(store: Store, name_or_id: str | int) -> str:
    """Delete a project and its sessions' rows (refused while one runs); folders are kept."""
    name = store.get_project(name_or_id)["name"]
    store.delete_project(name_or_id)
    return f"project {name} deleted (workspace folders are kept)"


# -- sessions ------------------------------------------------------------------------

@dataclass(frozen=True)
class NewSession:
    """`posegen session new` and the app's form, as one value."""

    project: str | int
    settings: JobSettings
    ckpt: str | Path | None = None  # None: $POSEGEN_CKPT_PATH
    device: str = "cpu"
    budget: str = "none"
    gpus: str = ""
    name: str | None = None
    kind: str = "full"  # "preview": a cheap look at the whole plan (see `preview_settings`)
    from_preview: int | None = None  # the preview session this full one was chosen from
    on_done: str | None = None  # a shell command run once when the session ends
    full: JobSettings | None = None  # a preview's full-run settings (`from_preview` reads)


@dataclass(frozen=True)
class CreatedSession:
    id: int
    project: str
    chunks: int
    frames_per_chunk: int
    moved_aside: Path | None = None  # a deleted session's leftover folder, moved here

    def message(self) -> str:
        return (f"session {self.id} of {self.project}: {self.chunks} chunks of "
                f"{self.frames_per_chunk} frames; start it with `posegen start {self.id}`")


def check_new_session(store: Store, new: NewSession) -> list[str]:
    """Every problem of a new session, one line each, naming the value and the fix."""
    return session_problems(store.get_project(new.project), new)


def session_problems(project: dict[str, Any], new: NewSession,
                     checkpoint: bool = True) -> list[str]:
    """`check_new_session` for a project row; ``checkpoint=False`` skips the checkpoint
    (a form that has no folder yet says so itself)."""
    return _checked_plan(project, new, checkpoint)[0]


def _checked_plan(project: dict[str, Any], new: NewSession, checkpoint: bool = True
                  ) -> tuple[list[str], ChunkPlan | None]:
    """The session's problems, and its chunk plan when there are none.

    Reads no model: the checkpoint's files are looked for, its block count read from
    the DiT's config, the pose clip's frames from its container.
    """
    problems = new.settings.problems()
    if new.full is not None:  # a preview: its full run must be possible too
        problems += [f"the full run: {p}" for p in new.full.problems()
                     if p not in problems]
    if new.on_done is not None and (bad := on_done_problem(new.on_done)):
        problems.append(bad)
    for check in (lambda: parse_device(new.device), lambda: parse_budget(new.budget)):
        try:
            check()
        except (ValueError, JobError) as e:
            problems.append(str(e))
    for key in ("image", "pose", "hand"):
        if not Path(project[key]).is_file():
            problems.append(f"project {key} {project[key]} is missing (moved or deleted); "
                            "create the project again with the file's new path")
    try:
        find_keyword(clean_prompt(project["prompt"]))
    except ValueError as e:
        problems.append(f"project prompt: {e}")
    if checkpoint:
        try:
            layout = CheckpointLayout(resolve_checkpoint_dir(new.ckpt).resolve())
            check_layout(layout)
            check_share_blocks(new.settings.share_blocks, layout.dit_dir("base"))
        except (ValueError, OSError, JobError) as e:
            problems.append(str(e))
    if problems:
        return problems, None
    try:
        s = new.settings
        return [], make_plan(video_info(project["pose"])[0], s.spec, s.num_chunks, s.anchor,
                             s.pad)
    except (ValueError, OSError, JobError) as e:
        return [str(e)], None


def create_session(store: Store, new: NewSession) -> CreatedSession:
    """Check everything (`check_new_session`), store the session, give it a fresh folder."""
    project = store.get_project(new.project)
    problems, plan = _checked_plan(project, new)
    if plan is None:
        raise SessionSettingsError(problems)
    s = new.settings
    ckpt = resolve_checkpoint_dir(new.ckpt).resolve()
    sid = store.create_session(
        project["id"], settings={**settings_to_json(s), "planned_chunks": plan.num_chunks,
                                 **({"full": settings_to_json(new.full)} if new.full else {})},
        seed=s.seed, steps=s.steps, cfg=s.cfg_scale,
        share_steps=" ".join(map(str, s.share_steps)),
        share_blocks=" ".join(map(str, s.share_blocks)), anchor=s.anchor,
        budget=new.budget, ckpt=str(ckpt), device=new.device,
        gpus=new.gpus or ("cpu" if new.device == "cpu" else ""), workspace="", name=new.name,
        kind=new.kind, from_preview=new.from_preview, on_done=new.on_done)
    # Resolved: a `sessions` folder linked to a shared mount is stored as the mount's
    # path, which the nodes of a Ray cluster see (docs/cluster.md).
    workspace, aside = fresh_workspace(sid)
    store.set_workspace(sid, str(workspace.resolve()))
    return CreatedSession(sid, project["name"], plan.num_chunks, s.frames, aside)


def preview_of(new: NewSession, size: tuple[int, int] | None = None,
               steps: int | None = None) -> NewSession:
    """The preview session of the full session ``new`` (engine/preview.py): the same plan
    at a smaller size and fewer steps; it keeps ``new``'s settings for `from_preview`."""
    return replace(new, settings=preview_settings(new.settings, size, steps), kind="preview",
                   full=new.settings, from_preview=None)


def from_preview(store: Store, preview_id: int, anchor: int | None = None, *,
                 name: str | None = None, device: str | None = None,
                 budget: str | None = None, gpus: str | None = None,
                 ckpt: str | Path | None = None, on_done: str | None = None) -> NewSession:
    """The full session a preview was made for, with its anchor chunk ``anchor`` (default:
    the preview's). The hardware (device, budget, gpus, ckpt) is the preview's unless
    given; the settings are the preview's full-run ones, so the chunk plan is the
    preview's."""
    p = store.get_session(preview_id)
    if p.get("kind") != "preview" or "full" not in p["settings"]:
        raise StoreError(f"session {preview_id} is not a preview; make one with "
                         "`posegen session new PROJECT --preview`")
    full = settings_from_json(p["settings"]["full"])
    if anchor is not None:
        full = replace(full, anchor=anchor)
    return NewSession(project=p["project_id"], settings=full,
                      ckpt=p["ckpt"] if ckpt is None else ckpt,
                      device=p["device"] if device is None else device,
                      budget=(p["budget"] or "none") if budget is None else budget,
                      gpus=(p["gpus"] or "") if gpus is None else gpus, name=name,
                      from_preview=preview_id, on_done=on_done)


class SessionSettingsError(JobError):
    """A new session's settings have problems; ``problems`` lists them all."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems[0] if len(problems) == 1 else
                         f"{len(problems)} problems: " + "; ".join(problems))
        self.problems = problems


def delete_session(store: Store, session_id: int) -> str:
    """Delete a session's rows (refused while it runs); its workspace folder is kept."""
    store.delete_session(session_id)
    return f"session {session_id} deleted (its workspace folder is kept)"


def archive(store: Store, kind: str, ident: int, archived: bool = True) -> str:
    if kind == "project":
        store.archive_project(ident, archived)
    else:
        store.archive_session(ident, archived)
    return f"{kind} {ident} {'archived' if archived else 'restored'}"


# -- results -------------------------------------------------------------------------

@dataclass(frozen=True)
class Retried:
    session_id: int
    chunks: list[int]  # the chunk asked for first, then those that read it
    seed: int | None

    def message(self) -> str:
        return (f"session {self.session_id}: chunks {self.chunks} will be generated again"
                + (f" with seed {self.seed}" if self.seed is not None else "")
                + f"; `posegen resume {self.session_id}` (or start) runs them")


def retry(store: Store, session_id: int, idx: int, seed: int | None = None) -> Retried:
    """Generate chunk ``idx`` again, and every chunk that read its frames or its cache."""
    session = store.get_session(session_id)
    workspace = Workspace(session["workspace"])
    chunks = store.chunks(session_id)
    if chunks and 0 <= idx < len(chunks) and chunks[idx]["role"] == "base" \
            and not workspace.anchor_cache_complete():
        raise StoreError(f"chunk {idx} reads the anchor's cache, which was cleared; retry "
                         f"the anchor too: posegen retry {session_id} {session['anchor']}")
    affected = store.retry_chunk(session_id, idx, seed=seed)
    workspace.invalidate(affected)
    if session["state"] == "done":
        store.set_session_state(session_id, "stopped")
    store.add_event(session_id, "retry", f"chunk {idx} again"
                    + (f" with seed {seed}" if seed is not None else "")
                    + f"; also invalidated {affected[1:]}" * bool(affected[1:]))
    return Retried(session_id, affected, seed)


@dataclass(frozen=True)
class CacheReport:
    usage: dict[str, int]  # bytes by kind of file
    cleared: list[Path] = field(default_factory=list)
    freed: int = 0

    def message(self) -> str:
        if not self.cleared:
            return "nothing to clear: unfinished chunks or the merge still need every file"
        return (f"cleared {len(self.cleared)} files, {self.freed / 1e6:.1f} MB; kept what "
                "unfinished chunks and the merge still need")


def cache(store: Store, session_id: int, clear: bool = False) -> CacheReport:
    """Disk use of the session's folder; with ``clear``, free what nothing still needs."""
    workspace = Workspace(store.get_session(session_id)["workspace"])
    usage = workspace.disk_usage()
    if not clear:
        return CacheReport(usage)
    chunks = {c["idx"]: (c["role"], c["status"]) for c in store.chunks(session_id)}
    files = workspace.clearable(chunks, bool(store.workers(session_id, live_only=True)))
    freed = 0
    for p in files:
        try:
            freed += p.stat().st_size
            p.unlink()
        except FileNotFoundError:
            continue  # gone meanwhile (a worker finished a write): nothing to free
    store.add_event(session_id, "cache_clear", f"freed {freed / 1e6:.1f} MB")
    return CacheReport(usage, files, freed)


def merge(store: Store, session_id: int, home: Path | None = None,
          on_progress: Callable[[str], None] | None = None) -> Path:
    """Merge the finished chunks into the session's video, in a child process (the app
    never loads the engine); returns the video's path."""
    from sessions.tasks import run_task

    chunks = store.chunks(session_id)
    left = [c["idx"] for c in chunks if c["status"] != "done"]
    if not chunks or left:
        raise StoreError(f"session {session_id}: cannot merge yet: chunks {left or 'all'} "
                         "are not done")
    result: dict[str, Any] = run_task("merge", {"session": session_id}, home=home,
                                      on_progress=on_progress)
    return Path(result["video"])
