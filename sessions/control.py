"""Process control: start detached workers, pause/resume/stop, status snapshots.

This is how viewers (the CLI, the app) act on a session: through the store
and by starting processes, never by importing the engine's generation code.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sessions.paths import home as default_home
from sessions.paths import log_dir
from sessions.store import WORKER_TIMEOUT_S, Store, StoreError

ACTIVE_STATES = ("running", "pausing", "stopping", "merging")


def worker_devices(session: dict[str, Any], gpus: str | None = None,
                   workers: int | None = None) -> list[str]:
    """Devices to start workers on: `--gpus 0,1` -> cuda:0, cuda:1; CPU -> N x cpu."""
    spec = gpus if gpus is not None else (session.get("gpus") or "")
    if spec and spec != "cpu":
        try:
            return [f"cuda:{int(g)}" for g in spec.split(",") if g.strip()]
        except ValueError:
            raise StoreError(f"--gpus {spec!r}: write GPU indices like 0 or 0,1,2") from None
    device = session.get("device") or "cpu"
    return [device] * max(workers or 1, 1)


def log_path(session_id: int, n: int, home: Path | None = None) -> Path:
    return log_dir(home) / f"session-{session_id:04d}-worker-{n}.log"


def start_workers(store: Store, session_id: int, devices: list[str],
                  home: Path | None = None, reap: bool = False) -> list[int]:
    """Start one detached worker per device; refuses a session that already runs."""
    session = store.get_session(session_id)
    _refuse_if_running(store, session_id)
    if session["state"] == "done":
        raise StoreError(f"session {session_id} is done: its video is "
                         f"{Path(session['workspace']) / 'video.mp4'}; use `posegen retry` to "
                         "regenerate a chunk")
    store.request(session_id, "run")
    store.set_session_state(session_id, "running")
    root = home or default_home()
    env = dict(os.environ, POSEGEN_HOME=str(root), PYTHONUNBUFFERED="1")
    threads = max(1, (os.cpu_count() or 1) // len(devices)) if devices[0] == "cpu" else 0
    pids = []
    for n, device in enumerate(devices):
        path = log_path(session_id, n, root)
        path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "sessions.worker", "--session", str(session_id),
               "--device", device, "--threads", str(threads)]
        with open(path, "ab") as logf:
            # A new process session: no controlling terminal, so SIGHUP from a closed
            # SSH connection or terminal never reaches the worker.
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                    stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                    close_fds=True)
        pids.append(proc.pid)
        if reap:  # a long-lived caller (the app) must collect its exited children
            threading.Thread(target=proc.wait, daemon=True).start()
    store.add_event(session_id, "start", f"started {len(devices)} worker(s) on "
                    f"{', '.join(devices)} (pid {', '.join(map(str, pids))})")
    return pids


def _refuse_if_running(store: Store, session_id: int) -> None:
    live = store.workers(session_id, live_only=True)
    if live:
        pids = ", ".join(str(w["pid"]) for w in live)
        raise StoreError(f"session {session_id} is already running (worker pid {pids}); "
                         f"see `posegen status {session_id}`, or `posegen pause {session_id}`")


def resume(store: Store, session_id: int, devices: list[str], home: Path | None = None,
           reap: bool = False) -> list[int]:
    """Continue after a pause, stop, crash or reboot: nothing finished is recomputed."""
    _refuse_if_running(store, session_id)
    # Workers on this host whose process is gone are found at once (pid check).
    store.reclaim_dead_workers(session_id, timeout_s=WORKER_TIMEOUT_S)
    for c in store.chunks(session_id):
        if c["status"] == "failed":
            store.release_chunk(session_id, c["idx"])
    if store.get_session(session_id)["state"] == "failed":
        store.set_session_state(session_id, "stopped")
    return start_workers(store, session_id, devices, home, reap)


def request_stop(store: Store, session_id: int, kind: str) -> str:
    """Ask workers to pause or stop at their next step boundary."""
    store.get_session(session_id)
    store.add_command(session_id, kind)
    store.request(session_id, kind)
    return store.get_session(session_id)["state"]


def wait(store: Store, session_id: int, timeout: float | None = None,
         poll: float = 0.5) -> str:
    """Block until the session is done or can go no further; returns its state."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        state = effective_state(store, session_id)
        if state in ("done", "failed", "paused", "stopped", "interrupted"):
            return state
        if deadline is not None and time.monotonic() > deadline:
            return "timeout"
        time.sleep(poll)


def effective_state(store: Store, session_id: int) -> str:
    """The stored state, or 'interrupted' when it claims to run but no worker lives."""
    state = store.get_session(session_id)["state"]
    if state in ACTIVE_STATES and not store.workers(session_id, live_only=True):
        # Give a just-started worker a moment to register before calling it lost.
        recent = [e for e in store.events(session_id, limit=1000) if e["kind"] == "start"]
        if recent and time.time() - recent[-1]["t"] < 20:
            return state
        return "interrupted"
    return state


def snapshot(store: Store, session_id: int) -> dict[str, Any]:
    """Everything `posegen status --json` prints for one session."""
    session = store.get_session(session_id)
    project = store.get_project(session["project_id"])
    chunks = store.chunks(session_id)
    workers = store.workers(session_id)
    remaining_steps = sum(max((c["steps"] or 0) - (c["step"] or 0), 0) for c in chunks
                          if c["status"] != "done")
    rates = [c["seconds_per_step"] for c in chunks if c["seconds_per_step"]]
    live = max(1, len([w for w in workers if w["alive"]]))
    eta = (sum(rates) / len(rates)) * remaining_steps / live if rates else None
    video = Path(session["workspace"]) / "video.mp4"
    return {
        "id": session_id, "name": session.get("name"), "project": project["name"],
        "state": effective_state(store, session_id), "desired": session["desired"],
        "error": session.get("error"), "workspace": session["workspace"],
        "video": str(video) if video.exists() else None, "eta_seconds": eta,
        "chunks": [{"index": c["idx"], "role": c["role"], "status": c["status"],
                    "step": c["step"] or 0, "steps": c["steps"], "start": c["start_frame"],
                    "end": c["end_frame"], "seed": c["seed"], "worker": c["worker_id"],
                    "seconds_per_step": c["seconds_per_step"], "eta": c["eta_seconds"],
                    "error": c["error"]} for c in chunks],
        "workers": [{"id": w["id"], "pid": w["pid"], "alive": bool(w["alive"]),
                     "host": w["host"], "device": w["device"],
                     "heartbeat_age": (time.time() - w["heartbeat_at"])
                     if w.get("heartbeat_at") else None, "end_reason": w.get("end_reason")}
                    for w in workers],
    }
