"""Engine work for callers that must not load the engine: one child process per task.

`run_task(name, args)` starts `python -m sessions.tasks NAME`, sends ``args`` as
JSON on stdin and reads JSON lines back: ``{"progress": text}`` while it works,
then ``{"result": {...}}`` or ``{"error": text}``. The app uses it to merge,
describe an image and render clips without importing torch, and reads typed
values, never a command's printed words. The CLI runs the same functions in
its own process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

Progress = Callable[[str], None]


class TaskError(RuntimeError):
    """The task refused or failed; the message says what to do."""


# -- the tasks (run in the child) -----------------------------------------------------

def merge_session(session_id: int, say: Progress) -> dict[str, Any]:
    from sessions.paths import db_path
    from sessions.session_job import job_for
    from sessions.store import Store

    store = Store(db_path())
    session = store.get_session(session_id)
    job = job_for(session, store.get_project(session["project_id"]), device="cpu")
    say(f"merging the chunks of session {session_id}")
    job.prepare()
    return {"video": str(job.merge())}


def describe(image: str, say: Progress) -> dict[str, Any]:
    from engine.inputs.describe import describe_image, resolve_model_dir

    model_dir = resolve_model_dir(None)
    say(f"describing {image} with {model_dir}")
    return {"prompt": describe_image(Path(image), model_dir, device="auto")}


def prepare(sapiens: str, driving: str, out: str, say: Progress) -> dict[str, Any]:
    from engine.inputs.prepare import prepare_inputs

    done = prepare_inputs(Path(sapiens), Path(driving), Path(out),
                          on_written=lambda path: say(f"wrote {path}"))
    return {"pose": str(done.pose), "hand": str(done.hand), "frames": done.frames,
            "fps": done.fps}


def make_tiny(folder: str, say: Progress) -> dict[str, Any]:
    from engine.checkpoint.tiny import make_tiny as write_tiny

    say(f"writing a tiny checkpoint with RANDOM weights to {folder}")
    write_tiny(Path(folder), seed=0)
    return {"ckpt": folder}


def sample_inputs(folder: str, frames: int, height: int, width: int, say: Progress
                  ) -> dict[str, Any]:
    from engine.sample_inputs import write_sample_inputs

    say(f"writing synthetic inputs ({frames} frames) to {folder}")
    paths = write_sample_inputs(Path(folder), frames=frames, height=height, width=width)
    return {name: str(path) for name, path in paths.items()}


TASKS: dict[str, Callable[..., dict[str, Any]]] = {
    "merge": lambda args, say: merge_session(int(args["session"]), say),
    "describe": lambda args, say: describe(str(args["image"]), say),
    "prepare": lambda args, say: prepare(str(args["sapiens"]), str(args["driving"]),
                                         str(args["out"]), say),
    "make_tiny": lambda args, say: make_tiny(str(args["dir"]), say),
    "sample_inputs": lambda args, say: sample_inputs(
        str(args["dir"]), int(args["frames"]), int(args["height"]), int(args["width"]), say),
}


def _send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    from engine.cli import USER_ERRORS
    from sessions.store import StoreError

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] not in TASKS:
        _send({"error": f"unknown task {argv!r}; one of {', '.join(TASKS)}"})
        return 2
    try:
        args = json.loads(sys.stdin.read() or "{}")
        result = TASKS[argv[0]](args, lambda text: _send({"progress": text}))
    except (*USER_ERRORS, StoreError) as e:
        _send({"error": str(e)})
        return 2
    except Exception as e:  # the traceback goes to stderr, the caller gets one line
        traceback.print_exc()
        _send({"error": f"{argv[0]} failed: {type(e).__name__}: {e}"})
        return 1
    _send({"result": result})
    return 0


# -- the caller's side -----------------------------------------------------------------

def run_task(name: str, args: dict[str, Any], home: Path | None = None,
             on_progress: Progress | None = None, timeout: float = 3600) -> dict[str, Any]:
    """Run task ``name`` in a child process; its result, or TaskError with its message."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if home is not None:
        env["POSEGEN_HOME"] = str(home)
    result: dict[str, Any] | None = None
    error = ""
    with tempfile.TemporaryFile("w+") as err, subprocess.Popen(
            [sys.executable, "-m", "sessions.tasks", name], env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=err, text=True) as proc:
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps(args))
            proc.stdin.close()
            for line in proc.stdout:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue  # a library printed to stdout; not ours
                if "progress" in message and on_progress is not None:
                    on_progress(str(message["progress"]))
                elif "result" in message:
                    result = message["result"]
                elif "error" in message:
                    error = str(message["error"])
            proc.wait()
        finally:
            timed_out = not timer.is_alive() and proc.returncode != 0
            timer.cancel()
        err.seek(0)
        stderr = err.read().strip()
    if result is not None and proc.returncode == 0:
        return result
    if timed_out:
        raise TaskError(f"{name} took over {timeout:g} s and was stopped")
    last = stderr.splitlines()[-1] if stderr else f"exit status {proc.returncode}"
    raise TaskError(error or f"{name} failed: {last}")


if __name__ == "__main__":
    sys.exit(main())
