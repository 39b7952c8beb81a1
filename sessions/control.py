"""Process control: start detached workers, pause/resume/stop, status snapshots.

This is how viewers (the CLI, the app) act on a session: through the store
and by starting processes, never by importing the engine's generation code.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.atomic import atomic_write_json, leftover_temps
from engine.workspace import Workspace
from sessions.eta import eta_of
from sessions.paths import home as default_home
from sessions.paths import log_dir
from sessions.store import WORKER_TIMEOUT_S, Store, StoreError, pid_alive

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


def workspace_of(session: dict[str, Any]) -> Workspace | None:
    """The session's job folder (None before `session new` has made it)."""
    return Workspace(session["workspace"]) if session.get("workspace") else None


def log_path(session_id: int, n: int, home: Path | None = None) -> Path:
    return log_dir(home) / f"session-{session_id:04d}-worker-{n}.log"


def worker_logs(session_id: int, home: Path | None = None) -> list[Path]:
    """The session's log files: its local workers', then its Ray driver's, if any."""
    folder = log_dir(home)
    logs = sorted(folder.glob(f"session-{session_id:04d}-worker-*.log"))
    driver = ray_driver_log(session_id, home)
    return logs + ([driver] if driver.is_file() else [])


def event_line(e: dict[str, Any]) -> str:
    """One event as `posegen logs` and the app's log screen write it."""
    t = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["t"]))
    return f"{t} {e['kind']:<13} {e['message']}"


@contextmanager
def _start_lock(session_id: int, home: Path | None = None) -> Iterator[None]:
    """Held from the running-check to the recorded spawn: two `posegen start` (or start
    and resume) at once run one after the other, and the second finds the first's
    workers, registered or not yet."""
    with open(log_dir(home) / f"session-{session_id:04d}-start.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _spawned_path(session_id: int, home: Path | None = None) -> Path:
    return log_dir(home) / f"session-{session_id:04d}-spawned.json"


def _spawned_unregistered(session_id: int, registered: set[int], home: Path | None = None
                          ) -> list[int]:
    """Workers this host started for the session that run but have not registered yet.

    Once a worker has registered, its row in the store says whether it runs (a paused
    worker marks itself ended while its process still exits).
    """
    try:
        pids = json.loads(_spawned_path(session_id, home).read_text())
    except (OSError, ValueError):
        return []
    return [p for p in pids if isinstance(p, int) and p not in registered and pid_alive(p)
            and _is_worker(p, session_id)]


def _is_worker(pid: int, session_id: int) -> bool:
    """Whether ``pid`` runs this session's worker (not a reused pid); True where unknown."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return not Path("/proc/self/cmdline").exists()
    return b"sessions.worker" in argv and str(session_id).encode() in argv


def start_workers(store: Store, session_id: int, devices: list[str],
                  home: Path | None = None, reap: bool = False) -> list[int]:
    """Start one detached worker per device; refuses a session that already runs."""
    with _start_lock(session_id, home):
        _check_startable(store, session_id, home)
        return _spawn_workers(store, session_id, devices, home, reap)


def _spawn_workers(store: Store, session_id: int, devices: list[str],
                   home: Path | None = None, reap: bool = False) -> list[int]:
    """Under the start lock: one detached worker per device, their pids recorded."""
    store.request(session_id, "run")
    store.set_session_state(session_id, "running")
    store.release_on_done(session_id)  # a new run: its ending runs --on-done again
    root = home or default_home()
    env = dict(os.environ, POSEGEN_HOME=str(root), PYTHONUNBUFFERED="1")
    threads = max(1, (os.cpu_count() or 1) // len(devices)) if devices[0] == "cpu" else 0
    pids = []
    for n, device in enumerate(devices):
        cmd = [sys.executable, "-m", "sessions.worker", "--session", str(session_id),
               "--device", device, "--threads", str(threads)]
        pids.append(_detached(cmd, log_path(session_id, n, root), env, reap))
    atomic_write_json(_spawned_path(session_id, home), pids)
    if (executor_of(store, session_id) or {}).get("kind", "local") != "local":
        store.add_event(session_id, "executor", json.dumps({"kind": "local"}))
    store.add_event(session_id, "start", f"started {len(devices)} worker(s) on "
                    f"{', '.join(devices)} (pid {', '.join(map(str, pids))})")
    return pids


def _detached(cmd: list[str], log: Path, env: dict[str, str], reap: bool) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as logf:
        # A new process session: no controlling terminal, so SIGHUP from a closed
        # SSH connection or terminal never reaches the worker.
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                close_fds=True)
    if reap:  # a long-lived caller (the app) must collect its exited children
        threading.Thread(target=proc.wait, daemon=True).start()
    return proc.pid


def _check_startable(store: Store, session_id: int, home: Path | None = None) -> None:
    session = store.get_session(session_id)
    _refuse_if_running(store, session_id, home)
    if session["state"] == "done":
        raise StoreError(f"session {session_id} is done: its video is "
                         f"{Path(session['workspace']) / 'video.mp4'}; to make a chunk again, "
                         f"`posegen retry {session_id} CHUNK` (t in the app)")


# -- the Ray executor (several hosts): see sessions/ray_driver.py and docs/cluster.md --
RAY_DEFAULTS: dict[str, Any] = {"address": "auto", "actors": None, "resource": "GPU",
                                "amount": 1.0, "device": None, "threads": 0}


def ray_options(session: dict[str, Any], given: dict[str, Any] | None = None,
                stored: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Ray executor's options: defaults < the stored choice < what was given now."""
    opts = dict(RAY_DEFAULTS)
    for source in (stored or {}, given or {}):
        opts.update({k: v for k, v in source.items() if k in RAY_DEFAULTS and v is not None})
    if opts["device"] is None:
        opts["device"] = "cpu" if (session.get("device") or "cpu") == "cpu" else "cuda:0"
    return opts


def executor_of(store: Store, session_id: int) -> dict[str, Any] | None:
    """The executor the session was last started with (``{"kind": "ray", ...}``), or None
    for a session only ever run by local workers."""
    event = store.last_event(session_id, "executor")
    if event is None:
        return None
    try:
        return json.loads(event["message"])
    except ValueError:
        return None


def ray_driver_lock(session_id: int, home: Path | None = None) -> Path:
    """The running driver holds an flock on this file (local disk) and writes its pid."""
    return log_dir(home) / f"session-{session_id:04d}-ray-driver.lock"


def _ray_driver_pid(session_id: int, home: Path | None = None) -> int | None:
    """The pid of a live Ray driver of this session, else None."""
    path = ray_driver_lock(session_id, home)
    if not path.exists():
        return None
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            text = f.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


def ray_driver_log(session_id: int, home: Path | None = None) -> Path:
    """The driver writes where the app looks for worker 0's log (actors' output included)."""
    return log_path(session_id, 0, home)


def start_ray_driver(store: Store, session_id: int, options: dict[str, Any],
                     home: Path | None = None, reap: bool = False) -> int:
    """Start the detached Ray driver of a session; returns its pid at once."""
    if importlib.util.find_spec("ray") is None:
        raise StoreError("the Ray executor needs Ray, which is not installed here: "
                         "pip install 'posegen-tui[ray]'")
    _check_startable(store, session_id, home)
    opts = ray_options(store.get_session(session_id), options)
    store.request(session_id, "run")
    store.set_session_state(session_id, "running", error=None)
    store.release_on_done(session_id)  # a new run: its ending runs --on-done again
    root = home or default_home()
    env = dict(os.environ, POSEGEN_HOME=str(root), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "sessions.ray_driver", "--session", str(session_id),
           "--address", str(opts["address"]), "--resource", str(opts["resource"]),
           "--amount", f"{float(opts['amount']):g}", "--device", str(opts["device"]),
           "--threads", str(int(opts["threads"]))]
    if opts["actors"] is not None:
        cmd += ["--actors", str(int(opts["actors"]))]
    store.add_event(session_id, "executor", json.dumps({"kind": "ray", **opts}))
    pid = _detached(cmd, ray_driver_log(session_id, root), env, reap)
    store.add_event(session_id, "start", f"started the Ray driver (pid {pid}) for the cluster "
                    f"at {opts['address']}: {opts['actors'] or 'one'} actor(s) "
                    f"{'' if opts['actors'] else 'per '}{opts['amount']:g} {opts['resource']}, "
                    f"device {opts['device']}")
    return pid


def wait_ray_ready(store: Store, session_id: int, pid: int, after_event: int,
                   timeout: float = 300.0, poll: float = 0.25) -> tuple[str, str]:
    """Until the driver's actors are ready: ("ready", who), ("failed", why) or
    ("timeout", "")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in store.events(session_id, after_id=after_event, limit=10000):
            after_event = e["id"]
            if e["kind"] == "ray_ready":
                return "ready", e["message"]
            if e["kind"] == "error":
                return "failed", e["message"]
        if not pid_alive(pid):
            session = store.get_session(session_id)
            return "failed", (session.get("error") or "the Ray driver exited; see "
                              f"`posegen logs {session_id}`")
        time.sleep(poll)
    return "timeout", ""


SETTLED_STATES = ("paused", "stopped", "failed", "done")
# How long a resume waits for a Ray driver that has settled its session and is exiting
# (ray.shutdown takes seconds on a busy host).
DRIVER_EXIT_WAIT_S = 60.0


def _refuse_if_running(store: Store, session_id: int, home: Path | None = None) -> None:
    driver = _ray_driver_pid(session_id, home)
    if driver is not None and store.get_session(session_id)["state"] in SETTLED_STATES:
        deadline = time.monotonic() + DRIVER_EXIT_WAIT_S
        while driver is not None and time.monotonic() < deadline:
            time.sleep(0.1)
            driver = _ray_driver_pid(session_id, home)
    if driver is not None:
        raise StoreError(f"session {session_id} is already running (Ray driver pid {driver}); "
                         f"see `posegen status {session_id}`, or `posegen pause {session_id}`")
    workers = store.workers(session_id)
    live = [w["pid"] for w in workers if w["alive"]]
    live += _spawned_unregistered(session_id, {w["pid"] for w in workers}, home)
    if live:
        pids = ", ".join(map(str, live))
        raise StoreError(f"session {session_id} is already running (worker pid {pids}); "
                         f"see `posegen status {session_id}`, or `posegen pause {session_id}`")


def resume(store: Store, session_id: int, devices: list[str], home: Path | None = None,
           reap: bool = False, executor: str | None = None,
           ray: dict[str, Any] | None = None) -> list[int]:
    """Continue after a pause, stop, crash or reboot: nothing finished is recomputed.

    ``executor`` None: the one the session last ran with (a Ray session restarts its
    Ray driver, with ``ray`` overriding its stored options); "local": ``devices``.
    """
    with _start_lock(session_id, home):
        return _resume_locked(store, session_id, devices, home, reap, executor, ray)


def _resume_locked(store: Store, session_id: int, devices: list[str], home: Path | None,
                   reap: bool, executor: str | None, ray: dict[str, Any] | None) -> list[int]:
    _refuse_if_running(store, session_id, home)
    _remove_leftover_temps(store, session_id)
    # Workers on this host whose process is gone are found at once (pid check).
    store.reclaim_dead_workers(session_id, timeout_s=WORKER_TIMEOUT_S)
    for c in store.chunks(session_id):
        if c["status"] == "failed":
            store.release_chunk(session_id, c["idx"])
    if store.get_session(session_id)["state"] == "failed":
        store.set_session_state(session_id, "stopped")
    stored = executor_of(store, session_id) or {}
    if (executor or stored.get("kind", "local")) == "ray":
        options = ray_options(store.get_session(session_id), ray, stored)
        return [start_ray_driver(store, session_id, options, home, reap)]
    return _spawn_workers(store, session_id, devices, home, reap)


def _remove_leftover_temps(store: Store, session_id: int) -> None:
    """Temp files that killed writers left (0.8 GB each in a full-size anchor cache).

    Under the start lock with no worker running, so none of them is a write in progress.
    """
    workspace = store.get_session(session_id)["workspace"]
    temps = leftover_temps(workspace) if workspace else []
    freed = 0
    for p in temps:
        with contextlib.suppress(FileNotFoundError):
            freed += p.stat().st_size
            p.unlink()
    if temps:
        store.add_event(session_id, "cleanup", f"removed {len(temps)} temp files of "
                        f"interrupted writes ({freed / 1e6:.1f} MB)")


def request_stop(store: Store, session_id: int, kind: str) -> str:
    """Ask workers to pause or stop at their next step boundary; what happened, in words
    (the CLI and the app say the same)."""
    if store.get_session(session_id)["state"] == "done":
        return f"session {session_id} is done: nothing to {kind}"
    state = store.request(session_id, kind)["state"]
    if state in ("pausing", "stopping"):
        return (f"session {session_id}: {state} (its workers {kind} at their next step "
                f"boundary; `posegen stop {session_id} --now` stops them at once)")
    return f"session {session_id}: {state} (no worker was running)"


def stop_now(store: Store, session_id: int, home: Path | None = None,
             grace_s: float = 30.0) -> list[int]:
    """Stop at once: this host's workers of the session (and its Ray driver) are killed,
    as `kill -9` would, and their chunks go back to ready with their saved step.

    Safe because every write is atomic and a chunk resumes from its last saved step:
    what is finished stays, and `posegen resume` continues. Workers on other hosts stop
    at their next step boundary. Returns the pids killed.
    """
    with _start_lock(session_id, home):  # no start/resume spawns workers meanwhile
        request_stop(store, session_id, "stop")
        host = socket.gethostname()
        workers = store.workers(session_id)
        mine = [w for w in workers if w["alive"] and w["host"] == host]
        pids = [w["pid"] for w in mine]
        pids += _spawned_unregistered(session_id, {w["pid"] for w in workers}, home)
        driver = _ray_driver_pid(session_id, home)
        if driver is not None and driver > 0:
            pids.append(driver)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + grace_s
        while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        for w in mine:
            store.end_worker(w["id"], "killed")
        if pids:
            store.add_event(session_id, "stop_now", "stopped at once: killed pid "
                            + ", ".join(map(str, pids)) + "; finished chunks and saved "
                            f"steps are kept (`posegen resume {session_id}` continues)")
        if not store.workers(session_id, live_only=True):
            store.set_session_state(session_id, "stopped")
    return pids


def stopped_now_message(session_id: int, pids: list[int]) -> str:
    return (f"session {session_id}: stopped at once ({len(pids)} process(es) killed); "
            f"finished chunks are kept; continue with `posegen resume {session_id}`")


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


def running_phases(store: Store, session_id: int, chunks: list[dict[str, Any]]
                   ) -> dict[int, tuple[str, float]]:
    """What each running chunk is doing and for how long: its newest phase event.

    Phases of an earlier attempt (before the chunk's claim) and of chunks not running
    are left out. ``chunks`` are the store's chunk rows.
    """
    events, now, out = store.latest_phases(session_id), time.time(), {}
    for c in chunks:
        event = events.get(c["idx"])
        if c["status"] == "running" and event and event["t"] >= (c["started_at"] or 0):
            # Events read "chunk 2 (base): sampling"; the phase is the part after the colon.
            out[c["idx"]] = (event["message"].rpartition(": ")[2], max(now - event["t"], 0.0))
    return out


def snapshot(store: Store, session_id: int) -> dict[str, Any]:
    """Everything `posegen status --json` prints for one session."""
    session = store.get_session(session_id)
    project = store.get_project(session["project_id"])
    chunks = store.chunks(session_id)
    workers = store.workers(session_id)
    eta = eta_of(store, session_id, chunks, len([w for w in workers if w["alive"]]))
    video = Path(session["workspace"]) / "video.mp4"
    phases = running_phases(store, session_id, chunks)
    return {
        "id": session_id, "name": session.get("name"), "project": project["name"],
        "kind": session.get("kind", "full"), "from_preview": session.get("from_preview"),
        "anchor": session.get("anchor"), "settings": session["settings"],
        "state": effective_state(store, session_id), "desired": session["desired"],
        "error": session.get("error"), "workspace": session["workspace"],
        "on_done": session.get("on_done"),
        "on_done_claimed_at": session.get("on_done_claimed_at"),
        "video": str(video) if video.exists() else None, "eta_seconds": eta,
        "chunks": [{"index": c["idx"], "role": c["role"], "status": c["status"],
                    "step": c["step"] or 0, "steps": c["steps"], "start": c["start_frame"],
                    "end": c["end_frame"], "seed": c["seed"], "worker": c["worker_id"],
                    "seconds_per_step": c["seconds_per_step"], "eta": c["eta_seconds"],
                    "seconds": c["seconds"], "error": c["error"],
                    **dict(zip(("phase", "phase_seconds"), phases.get(c["idx"], (None, None)),
                               strict=True))} for c in chunks],
        "workers": [{"id": w["id"], "pid": w["pid"], "alive": bool(w["alive"]),
                     "host": w["host"], "device": w["device"],
                     "heartbeat_age": (time.time() - w["heartbeat_at"])
                     if w.get("heartbeat_at") else None, "end_reason": w.get("end_reason")}
                    for w in workers],
    }
