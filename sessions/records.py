"""What a worker writes into the store, shared by both executors.

The local executor (`sessions/worker.py`, one process per GPU) writes its own
rows; the Ray executor (`sessions/ray_driver.py`) writes them for its actors,
which never touch the database. Both go through `WorkerRecord`, so the
events, chunk states and session states they leave are the same.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path
from typing import Any

from engine.progress import ProgressEvent
from engine.workspace import Workspace
from sessions import on_done
from sessions.scheduling import dit_kind, is_switch
from sessions.store import WORKER_TIMEOUT_S, Store

HEARTBEAT_S = float(os.environ.get("POSEGEN_HEARTBEAT_S", "2"))


def log(msg: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}", flush=True)


def store_plan(store: Store, session_id: int, plan: Any, steps: int) -> bool:
    """The chunk plan into the chunks table, once (a later worker changes nothing)."""
    return store.init_chunks(session_id, [
        {"idx": c.index, "role": c.role, "start_frame": c.start, "end_frame": c.end,
         "deps": list(plan.dependencies(c.index)), "steps": steps}
        for c in plan.chunks])


class WorkerRecord:
    """The store's side of one worker: its row, its chunk's progress and its events."""

    def __init__(self, store: Store, session_id: int, device: str) -> None:
        self.store, self.session_id, self.device = store, session_id, device
        self.worker_id = -1
        self.switches = 0
        # Set when a write finds the chunk owned by another worker (this one was declared
        # lost and its chunk reclaimed): the worker must stop touching that chunk.
        self.lost_claim = False

    def register(self, *, pid: int, host: str, where: str = "") -> int:
        """Insert the workers row and log ``worker_start``; ``where`` adds e.g. a node."""
        s, sid = self.store, self.session_id
        self.worker_id = s.register_worker(sid, pid=pid, host=host, device=self.device)
        s.add_event(sid, "worker_start", f"worker {self.worker_id} (pid {pid}) on "
                    f"{self.device}{where}", worker_id=self.worker_id)
        return self.worker_id

    def progress(self, e: ProgressEvent) -> None:
        """One engine progress event: one short write."""
        s, sid = self.store, self.session_id
        if e.kind == "step":
            mine = s.chunk_progress(sid, e.chunk, step=e.step, steps=e.steps,
                                    seconds_per_step=e.seconds_per_step,
                                    eta_seconds=e.eta_chunk, worker_id=self.owner)
            self.lost_claim = self.lost_claim or not mine
        elif e.kind == "chunk_start":
            s.add_event(sid, "chunk_start", f"chunk {e.chunk} ({e.role}) started on {self.device}",
                        chunk_idx=e.chunk, worker_id=self.worker_id)
        elif e.kind == "phase":
            s.add_event(sid, "phase", f"chunk {e.chunk} ({e.role}): {e.message}",
                        chunk_idx=e.chunk, worker_id=self.worker_id)
        elif e.kind in ("compiled", "notice"):
            # "chunk 2 (base): DiT blocks compiled in 14.2 s; on (--compile auto), cache ..."
            s.add_event(sid, e.kind, f"chunk {e.chunk} ({e.role}): {e.message}",
                        chunk_idx=e.chunk, worker_id=self.worker_id)
        elif e.kind == "merge_done":
            s.add_event(sid, "merged", e.message, worker_id=self.worker_id)

    def reclaim_lost(self) -> list[int]:
        """Take back the chunks of workers whose heartbeat stopped (any host)."""
        s, sid = self.store, self.session_id
        found = s.reclaim_dead_workers(sid, WORKER_TIMEOUT_S)
        for idx in found:
            s.add_event(sid, "reclaimed", f"chunk {idx} taken back from a lost worker",
                        chunk_idx=idx, worker_id=self.worker_id)
        return found

    def claim(self, loaded: str | None) -> dict | None:
        """The next chunk for a worker holding the ``loaded`` DiT; logs a DiT switch."""
        s, sid = self.store, self.session_id
        row = s.claim_chunk(sid, self.worker_id, loaded_kind=loaded)
        if row is not None and is_switch(loaded, row["role"]):
            self.switches += 1
            s.add_event(sid, "dit_switch",
                        f"worker {self.worker_id} loads the {dit_kind(row['role'])} DiT "
                        f"for chunk {row['idx']} (no {loaded} chunk ready; switch "
                        f"{self.switches})", chunk_idx=row["idx"], worker_id=self.worker_id)
        return row

    @property
    def owner(self) -> int | None:
        """The worker id chunk writes must match (None before registering: tests)."""
        return self.worker_id if self.worker_id >= 0 else None

    def paused(self, idx: int) -> None:
        """The chunk stopped at a step boundary: back to ready, its step kept.

        Only if it is still this worker's: a worker declared lost while it was stopped
        (SIGSTOP, a long swap) finds its chunk reclaimed, maybe running elsewhere.
        """
        s, sid = self.store, self.session_id
        if not s.release_chunk(sid, idx, worker_id=self.owner):
            self.lost_claim = True
            return
        s.add_event(sid, "chunk_paused", f"chunk {idx} left at a step boundary",
                    chunk_idx=idx, worker_id=self.worker_id)

    def finish(self, idx: int, done: dict[str, Any], recovered: bool = False,
               nvml_peak: int | None = None) -> bool:
        """Record a finished chunk from its ``done.json``; False if it was not ours anymore."""
        recorded = self.store.finish_chunk(
            self.session_id, idx, seconds=done.get("seconds"),
            seconds_per_step=done.get("seconds_per_step"),
            peak_vram_torch=done.get("peak_vram_bytes"), peak_vram_nvml=nvml_peak,
            budget=str(budget_used(done.get("extra", {}))), worker_id=self.worker_id)
        if not recorded:  # declared lost meanwhile; the chunk's new owner records it
            return False
        what = "found finished on disk" if recovered else "done"
        self.store.add_event(self.session_id, "chunk_done", f"chunk {idx} {what}",
                             chunk_idx=idx, worker_id=self.worker_id)
        return True

    def fail(self, idx: int | None, msg: str) -> None:
        """A chunk (or the worker's setup) failed: the session fails with ``msg``."""
        s, sid = self.store, self.session_id
        if idx is not None and not s.fail_chunk(sid, idx, msg, worker_id=self.owner):
            # Not ours anymore: the chunk's new owner decides; the session goes on.
            self.lost_claim = True
            s.add_event(sid, "worker_lost", f"worker {self.worker_id} failed on chunk {idx} "
                        f"after losing it to another worker: {msg}", chunk_idx=idx,
                        worker_id=self.owner)
            return
        s.add_event(sid, "error", msg, chunk_idx=idx,
                    worker_id=self.worker_id if self.worker_id >= 0 else None)
        if s.get_session(sid)["state"] != "done":  # a finished video stays finished
            s.set_session_state(sid, "failed", error=msg)

    def end(self, reason: str) -> list[int]:
        if self.worker_id < 0:
            return []
        return self.store.end_worker(self.worker_id, reason)


def mark_running(store: Store, session_id: int) -> None:
    """An executor starts running chunks (unless a pause or stop came meanwhile)."""
    if store.get_session(session_id)["desired"] == "run":
        store.set_session_state(session_id, "running")


def fail_session(store: Store, session_id: int, msg: str) -> None:
    """The executor itself failed (cannot start, lost every worker): say why."""
    store.add_event(session_id, "error", msg)
    store.set_session_state(session_id, "failed", error=msg)


def send_heartbeat(store: Store, worker_id: int, **numbers: Any) -> bool:
    """A worker's heartbeat with its memory numbers; False once it was declared lost."""
    return store.heartbeat(worker_id, **numbers)


def merge_once(store: Store, session_id: int, job: Any) -> None:
    """Merge under a file lock so two workers finishing together merge once."""
    lock_path = Path(job.out) / ".merge.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not job.video_path.exists():
            store.set_session_state(session_id, "merging")
            job.merge()


def settle_state(store: Store, session_id: int) -> None:
    """The last worker out sets the session's resting state."""
    sid = session_id
    if store.workers(sid, live_only=True):
        return
    session = store.get_session(sid)
    chunks = store.chunks(sid)
    video = Path(session["workspace"]) / "video.mp4"
    if chunks and all(c["status"] == "done" for c in chunks) and video.exists():
        state = "done"
    elif session["state"] == "failed":
        run_on_done(store, sid, "failed")  # failed by a chunk or the executor's setup
        return
    elif session["desired"] == "pause":
        state = "paused"
    elif session["desired"] == "stop":
        state = "stopped"
    elif any(c["status"] == "failed" for c in chunks):
        state = "failed"
    else:
        state = "stopped"
    store.set_session_state(sid, state)
    store.add_event(sid, "state", state)
    if state in ("done", "failed"):  # a pause or stop was the user's own doing
        run_on_done(store, sid, state)


def run_on_done(store: Store, session_id: int, state: str) -> int | None:
    """The session ended ``state``: run its --on-done command if this caller wins the
    claim (once per ending; a new run releases it). Its pid, or None."""
    session = store.get_session(session_id)
    cmd = session.get("on_done")
    if not cmd or not store.claim_on_done(session_id):
        return None
    if not session.get("workspace"):  # never made by `session new`: nowhere for its log
        store.add_event(session_id, "on_done", f"could not run {cmd}: the session has no "
                        "workspace folder")
        return None
    root = Path(session["workspace"])
    workspace = Workspace(root)
    env = {"POSEGEN_SESSION_ID": str(session_id), "POSEGEN_SESSION_STATE": state,
           "POSEGEN_PROJECT": session["project_name"],
           "POSEGEN_VIDEO": str(workspace.video) if workspace.video.is_file() else "",
           "POSEGEN_WORKSPACE": str(root)}
    try:
        pid = on_done.launch(cmd, env, workspace.on_done_log, root)
    except OSError as e:  # a full disk or a missing /bin/sh must not fail the worker
        store.add_event(session_id, "on_done", f"could not run {cmd}: {e}")
        return None
    store.add_event(session_id, "on_done", f"ran {cmd} (pid {pid}); output in "
                    f"{workspace.on_done_log}")
    return pid


def budget_used(extra: dict[str, Any]) -> Any:
    """The `-p` a chunk ran with: what `auto` resolved to, else the setting itself."""
    return extra.get("resolved_budget") if extra.get("budget") == "auto" else extra.get("budget")


def describe_error(e: BaseException, session: int | None = None) -> str:
    """One line that says what happened and what to do next (for ``session``)."""
    sid = "SESSION" if session is None else str(session)
    full = isinstance(e, OSError) and e.errno == errno.ENOSPC
    if full or "No space left" in str(e) or "StorageFull" in str(e):
        filename = getattr(e, "filename", None)
        where = f" while writing {filename}" if filename else ""
        return (f"disk full{where}: free space on that disk, then `posegen resume {sid}` "
                "(finished chunks are kept)")
    text = f"{type(e).__name__}: {e}"
    if "out of memory" in str(e).lower():
        return (f"{text.splitlines()[0]} -- lower the GPU budget (-p, e.g. 2e9) with a new "
                f"session, or free the GPU, then `posegen resume {sid}`")
    return text.splitlines()[0] if text else repr(e)
