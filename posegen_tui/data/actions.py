"""What the keys do to a session: store requests, worker processes, `posegen` commands.

Each function runs on a worker thread and returns a one-line result for a
notification; a problem is raised as `ActionError`/`StoreError` with a message
that says what to do. Work that needs the engine (retry's file invalidation,
merge, new sessions) runs as a `posegen` subprocess, never in the app.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from posegen_tui.data.forms import FormError, ProjectValues, check_project, check_session
from posegen_tui.data.media_info import frame_count
from posegen_tui.data.store_access import opened
from sessions import control
from sessions.store import StoreError


class ActionError(RuntimeError):
    """A `posegen` command refused or failed; the message is its one-line error."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output  # what it printed on stdout before failing


def posegen(home: Path, *args: str, timeout: float = 600,
            on_line: Callable[[str], None] | None = None) -> str:
    """Run `posegen ARGS` against this app's POSEGEN_HOME; returns its stdout.

    ``on_line`` sees each stdout line as it is printed (progress of long commands).
    """
    env = dict(os.environ, POSEGEN_HOME=str(home), PYTHONUNBUFFERED="1")
    lines: list[str] = []
    with tempfile.TemporaryFile("w+") as err, subprocess.Popen(
            [sys.executable, "-m", "sessions.cli", *args], env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=err, text=True) as proc:
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if on_line is not None and line.strip():
                    on_line(line.strip())
            proc.wait()
        finally:
            timed_out = not timer.is_alive() and proc.returncode != 0
            timer.cancel()
        err.seek(0)
        stderr = err.read()
    out = "".join(lines).strip()
    if proc.returncode != 0:
        if timed_out:
            raise ActionError(f"`posegen {args[0]}` took over {timeout:g} s and was stopped",
                              out)
        raise ActionError(cli_error(stderr) or f"exit status {proc.returncode}", out)
    return out


def cli_error(stderr: str) -> str:
    """The CLI's message (it may span lines), else the last line (e.g. of a traceback)."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if line.startswith("posegen: error: "):
            return " ".join([line.removeprefix("posegen: error: "), *lines[i + 1:]])
    return lines[-1] if lines else ""


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
    args = ["retry", str(session_id), str(idx)]
    if seed is not None:
        args += ["--seed", str(seed)]
    posegen(home, *args)
    return (f"chunk {idx} will be generated again" +
            (f" with seed {seed}" if seed is not None else "") + "; press r to resume")


def merge(home: Path, session_id: int) -> str:
    with opened(home) as store:
        chunks = store.chunks(session_id)
    left = [c["idx"] for c in chunks if c["status"] != "done"]
    if not chunks or left:
        raise ActionError(f"cannot merge yet: chunks {left or 'all'} are not done")
    return f"merged: {posegen(home, 'merge', str(session_id)).splitlines()[-1]}"


def clear_cache(home: Path, session_id: int) -> str:
    out = posegen(home, "cache", str(session_id), "--clear")
    return out.splitlines()[-1] if out else "nothing to clear"


# -- projects and sessions ---------------------------------------------------------

def create_project(home: Path, values: dict[str, str],
                   progress: Callable[[str], None] | None = None) -> int:
    """Check the form and store the project; a Sapiens folder is first rendered into
    clips under $POSEGEN_HOME/projects/NAME/clips by `posegen prepare`."""
    v = check_project(values)
    if not v.problems and v.needs_prepare:
        prepare_clips(home, v, progress)
    if not v.problems:
        pose, hand = frame_count(v.pose), frame_count(v.hand)
        if pose is None:
            v.problems.append(f"pose: {v.pose} is not a readable video")
        elif hand != pose:
            v.problems.append(f"hand: {hand} frames, but the pose clip has {pose}; render "
                              "both from the same driving video")
    if v.problems:
        raise FormError(v.problems)
    with opened(home) as store:
        try:
            return store.create_project(v.name, image=v.image, pose=v.pose, hand=v.hand,
                                        prompt=v.prompt, framing=v.framing,
                                        driving=v.driving or None)
        except StoreError as e:
            raise FormError([str(e)]) from e


def prepare_clips(home: Path, v: ProjectValues,
                  progress: Callable[[str], None] | None = None) -> None:
    """`posegen prepare` into the project's clips folder; sets v.pose/v.hand or a problem."""
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
    say(f"preparing clips... (posegen prepare into {out})")
    try:
        posegen(home, "prepare", "--sapiens", v.sapiens, "--driving", v.driving,
                "--out", str(out), timeout=3600,
                on_line=lambda line: say(f"preparing clips... {line}"))
    except ActionError as e:
        v.problems.append(f"prepare: {e}")
        return
    v.pose, v.hand = str(out / "pose.mp4"), str(out / "hand.mp4")


def describe(home: Path, image: str) -> str:
    """`posegen prompt IMAGE`: a prompt draft describing the reference image."""
    image = image.strip()
    if not image:
        raise ActionError("image: fill in the reference image first; Describe image reads it")
    path = Path(image).expanduser()
    if not path.is_file():
        raise ActionError(f"image: {image} not found (missing file)")
    return posegen(home, "prompt", str(path.resolve()), timeout=3600)


def create_session(home: Path, project_id: int, values: dict[str, str]) -> int:
    with opened(home) as store:
        project = store.get_project(project_id)
    args = check_session(project, values)
    try:
        out = posegen(home, *args)
    except ActionError as e:
        raise FormError([str(e)]) from e
    return int(json.loads(out.splitlines()[-1])["id"])


def delete(home: Path, kind: str, ident: int) -> str:
    """The same command and words as `posegen project delete` / `posegen session delete`."""
    from sessions.control import delete_project, delete_session

    with opened(home) as store:
        if kind == "project":
            return delete_project(store, ident)
        return delete_session(store, ident)


def archive(home: Path, kind: str, ident: int, archived: bool = True) -> str:
    with opened(home) as store:
        if kind == "project":
            store.archive_project(ident, archived)
        else:
            store.archive_session(ident, archived)
    return f"{kind} {ident} {'archived' if archived else 'restored'}"

