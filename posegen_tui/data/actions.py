"""What the keys do: each opens the store and calls one command-layer function.

Each function runs on a worker thread and returns a one-line result for a
notification; a problem is raised with a message that says what to do
(`FormError` lists a form's problems). The app never runs `posegen` or reads
its printed words: session changes go through `sessions.commands` and
`sessions.control`, and engine work (merge, describing an image, rendering clips)
through `sessions.tasks`, which runs it in a child process and answers in JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from posegen_tui.data.forms import FormError, ProjectValues, check_project, check_session
from posegen_tui.data.store_access import opened
from sessions import commands, control
from sessions.commands import NewProject, SessionSettingsError
from sessions.store import StoreError
from sessions.tasks import TaskError, run_task

ActionError = TaskError  # what an engine task raises; its message says what to do


# -- process control -----------------------------------------------------------------

def start(home: Path, session_id: int) -> str:
    with opened(home) as store:
        devices = control.worker_devices(store.get_session(session_id))
        pids = control.start_workers(store, session_id, devices, home, reap=True)
    return f"session {session_id}: started {len(pids)} worker(s) on {', '.join(devices)}"


def resume(home: Path, session_id: int) -> str:
    with opened(home) as store:
        devices = control.worker_devices(store.get_session(session_id))
        pids = control.resume(store, session_id, devices, home, reap=True)
    return f"session {session_id}: resumed with {len(pids)} worker(s)"


def request(home: Path, session_id: int, kind: str) -> str:
    """pause or stop at the next step boundary."""
    with opened(home) as store:
        return control.request_stop(store, session_id, kind)


def stop_now(home: Path, session_id: int) -> str:
    """`posegen stop SESSION --now`: the same call and words."""
    with opened(home) as store:
        pids = control.stop_now(store, session_id, home)
    return control.stopped_now_message(session_id, pids)


def retry(home: Path, session_id: int, idx: int, seed: int | None) -> str:
    with opened(home) as store:
        done = commands.retry(store, session_id, idx, seed)
    return (f"chunks {done.chunks} will be generated again" +
            (f" with seed {seed}" if seed is not None else "") + "; press r to resume")


def merge(home: Path, session_id: int) -> str:
    with opened(home) as store:
        return f"merged: {commands.merge(store, session_id, home)}"


def clear_cache(home: Path, session_id: int) -> str:
    with opened(home) as store:
        return commands.cache(store, session_id, clear=True).message()


# -- projects and sessions ---------------------------------------------------------

def create_project(home: Path, values: dict[str, str],
                   progress: Callable[[str], None] | None = None) -> int:
    """Check the form and store the project; a Sapiens folder is first rendered into
    clips under $POSEGEN_HOME/projects/NAME/clips."""
    v = check_project(values)
    if not v.problems and v.needs_prepare:
        prepare_clips(home, v, progress)
    if v.problems:
        raise FormError(v.problems)
    with opened(home) as store:
        try:
            return commands.create_project(store, NewProject(
                v.name, image=Path(v.image), pose=Path(v.pose), hand=Path(v.hand),
                prompt=v.prompt, framing=v.framing,
                driving=Path(v.driving) if v.driving else None))
        except (StoreError, ValueError, RuntimeError) as e:
            raise FormError([str(e)]) from e


def prepare_clips(home: Path, v: ProjectValues,
                  progress: Callable[[str], None] | None = None) -> None:
    """Render the Sapiens folder into the project's clips folder; sets v.pose/v.hand or a
    problem."""
    if v.name in (".", "..") or "/" in v.name or "\\" in v.name:
        v.problems.append(f"name {v.name!r}: with a Sapiens folder the name becomes a folder "
                          "name; use no slashes")
        return
    with opened(home) as store:
        taken = {p["name"] for p in store.list_projects(include_archived=True)}
    if v.name in taken:
        v.problems.append(f"project '{v.name}' already exists; pick another name, or archive "
                          "or delete the old one")
        return
    out = Path(home) / "projects" / v.name / "clips"
    say = progress or (lambda _: None)
    say(f"preparing clips... (into {out})")
    try:
        clips = run_task("prepare", {"sapiens": v.sapiens, "driving": v.driving,
                                     "out": str(out)}, home=home,
                         on_progress=lambda line: say(f"preparing clips... {line}"))
    except TaskError as e:
        v.problems.append(f"prepare: {e}")
        return
    v.pose, v.hand = clips["pose"], clips["hand"]


def describe(home: Path, image: str) -> str:
    """A prompt draft describing the reference image (Qwen2.5-VL, in a child process)."""
    image = image.strip()
    if not image:
        raise ActionError("image: fill in the reference image first; Describe image reads it")
    path = Path(image).expanduser()
    if not path.is_file():
        raise ActionError(f"image: {image} not found (missing file)")
    return str(run_task("describe", {"image": str(path.resolve())}, home=home)["prompt"])


def create_session(home: Path, project_id: int, values: dict[str, str],
                   preview: bool = False) -> int:
    """The form's session; with ``preview``, its preview (engine/preview.py) instead."""
    with opened(home) as store:
        new = check_session(store.get_project(project_id), values)
        if preview:
            new = commands.preview_of(new)
        try:
            return commands.create_session(store, new).id
        except SessionSettingsError as e:  # changed since the form's check
            raise FormError(e.problems) from e
        except (StoreError, ValueError, RuntimeError) as e:
            raise FormError([str(e)]) from e


def delete(home: Path, kind: str, ident: int) -> str:
    """The same command and words as `posegen project delete` / `posegen session delete`."""
    with opened(home) as store:
        if kind == "project":
            return commands.delete_project(store, ident)
        return commands.delete_session(store, ident)


def archive(home: Path, kind: str, ident: int, archived: bool = True) -> str:
    with opened(home) as store:
        return commands.archive(store, kind, ident, archived)


def full_from_preview(home: Path, preview_id: int, anchor: int) -> int:
    """`posegen session new --from-preview N --anchor K`, then start it: the full session's
    id."""
    with opened(home) as store:
        created = commands.create_session(store, commands.from_preview(store, preview_id,
                                                                       anchor))
        devices = control.worker_devices(store.get_session(created.id))
        control.start_workers(store, created.id, devices, home, reap=True)
    return created.id
