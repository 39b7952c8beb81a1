"""The background engine process: claims a session's chunks and generates them.

Started by `posegen start` in its own process session (no controlling
terminal, so closing the SSH connection does not reach it). One worker per
device. It heartbeats into the database, records progress after every step,
and stops cooperatively at a step boundary when the session is paused or
stopped. A worker killed outright leaves its chunk "running" under a dead
heartbeat; the next worker (or `posegen resume`) reclaims it, and the chunk
continues from its last saved step.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from engine.gpu_info import device_index, device_memory
from engine.progress import ProgressEvent
from sessions.paths import db_path
from sessions.scheduling import dit_kind, is_switch
from sessions.session_job import job_for
from sessions.store import Store

HEARTBEAT_S = float(os.environ.get("POSEGEN_HEARTBEAT_S", "2"))
WORKER_TIMEOUT_S = float(os.environ.get("POSEGEN_WORKER_TIMEOUT_S", "30"))


def log(msg: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}", flush=True)


class Heartbeat(threading.Thread):
    """Beats every few seconds with memory numbers; watches the session's wish."""

    def __init__(self, db: Path, session_id: int, worker_id: int, device: str) -> None:
        super().__init__(daemon=True, name="heartbeat")
        self.db, self.session_id, self.worker_id, self.device = db, session_id, worker_id, device
        self.halt = threading.Event()
        self.desired = "run"
        self.nvml_peak = 0
        self._last_compact = 0.0

    def reset_peak(self) -> None:
        self.nvml_peak = 0

    def run(self) -> None:
        store = Store(self.db)
        nvml_idx = device_index(self.device)
        while not self.halt.is_set():
            try:
                self.beat(store, nvml_idx)
            except Exception as e:  # a missed beat must not kill the worker
                log(f"heartbeat failed: {e}")
            self.halt.wait(HEARTBEAT_S)

    def beat(self, store: Store, nvml_idx: int | None) -> None:
        numbers: dict[str, Any] = {}
        if self.device.startswith("cuda"):
            import torch

            numbers["torch_allocated"] = int(torch.cuda.memory_allocated(self.device))
            numbers["torch_peak"] = int(torch.cuda.max_memory_allocated(self.device))
        mem = device_memory(nvml_idx) if nvml_idx is not None else None
        if mem is not None:
            numbers["nvml_used"], numbers["nvml_total"] = mem.used, mem.total
            self.nvml_peak = max(self.nvml_peak, mem.used)
            store.add_gpu_sample(host=socket.gethostname(), device_index=mem.index,
                                 used=mem.used, total=mem.total, util=mem.util, temp=mem.temp,
                                 worker_id=self.worker_id)
            if time.time() - self._last_compact > 600:
                store.compact_gpu_samples()
                self._last_compact = time.time()
        if not store.heartbeat(self.worker_id, **numbers):
            # Another process declared this worker lost and took its chunk: stop now.
            self.desired = "lost"
            return
        self.desired = store.get_session(self.session_id)["desired"]


class Worker:
    def __init__(self, session_id: int, device: str, home: Path | None = None) -> None:
        self.session_id = session_id
        self.device = device
        self.db = db_path(home)
        self.store = Store(self.db)
        self.worker_id = -1
        self.chunk: int | None = None
        self._last_progress = 0.0
        self.switches = 0

    # progress from the engine: one short write per step
    def on_progress(self, e: ProgressEvent) -> None:
        s, sid = self.store, self.session_id
        if e.kind == "step":
            s.chunk_progress(sid, e.chunk, step=e.step, steps=e.steps,
                             seconds_per_step=e.seconds_per_step, eta_seconds=e.eta_chunk)
        elif e.kind == "chunk_start":
            s.add_event(sid, "chunk_start", f"chunk {e.chunk} ({e.role}) started on {self.device}",
                        chunk_idx=e.chunk, worker_id=self.worker_id)
        elif e.kind == "merge_done":
            s.add_event(sid, "merged", e.message, worker_id=self.worker_id)

    def run(self) -> int:
        store, sid = self.store, self.session_id
        session = store.get_session(sid)
        project = store.get_project(session["project_id"])
        self.worker_id = store.register_worker(sid, pid=os.getpid(), host=socket.gethostname(),
                                               device=self.device)
        store.add_event(sid, "worker_start", f"worker {self.worker_id} (pid {os.getpid()}) on "
                        f"{self.device}", worker_id=self.worker_id)
        log(f"worker {self.worker_id} for session {sid} on {self.device}")
        beat = Heartbeat(self.db, sid, self.worker_id, self.device)
        beat.start()
        reason = "finished"
        try:
            job = job_for(session, project, self.device, progress=self.on_progress)
            plan = job.prepare()
            store.init_chunks(sid, [
                {"idx": c.index, "role": c.role, "start_frame": c.start, "end_frame": c.end,
                 "deps": list(plan.dependencies(c.index)), "steps": job.settings.steps}
                for c in plan.chunks])
            reason = self.loop(job, beat)
        except Exception as e:
            reason = "error"
            msg = describe_error(e)
            log(f"error: {msg}\n{traceback.format_exc()}")
            if self.chunk is not None:
                store.fail_chunk(sid, self.chunk, msg)
            store.add_event(sid, "error", msg, chunk_idx=self.chunk, worker_id=self.worker_id)
            store.set_session_state(sid, "failed", error=msg)
        finally:
            beat.halt.set()
            store.end_worker(self.worker_id, reason)
            self.settle_state()
            log(f"worker {self.worker_id} exits: {reason}")
        return 0 if reason in ("finished", "paused", "stopped", "done") else 1

    def loop(self, job, beat: Heartbeat) -> str:
        store, sid = self.store, self.session_id
        if store.get_session(sid)["desired"] == "run":
            store.set_session_state(sid, "running")
        while True:
            desired = store.get_session(sid)["desired"]
            if beat.desired == "lost":
                return "lost"
            if desired != "run":
                return "paused" if desired == "pause" else "stopped"
            for idx in store.reclaim_dead_workers(sid, WORKER_TIMEOUT_S):
                store.add_event(sid, "reclaimed", f"chunk {idx} taken back from a lost worker",
                                chunk_idx=idx, worker_id=self.worker_id)
            loaded = job.loaded_dit
            row = store.claim_chunk(sid, self.worker_id, loaded_kind=loaded)
            if row is None:
                if store.all_done(sid):
                    self.merge_once(job)
                    return "done"
                chunks = store.chunks(sid)
                if not any(c["status"] == "running" for c in chunks):
                    failed = [c["idx"] for c in chunks if c["status"] == "failed"]
                    if failed:
                        return "blocked"
                time.sleep(min(HEARTBEAT_S, 1.0))
                continue
            self.chunk = idx = row["idx"]
            if job.is_done(idx):  # finished on disk just before a crash: adopt it
                self.finish(job, idx, recovered=True)
                continue
            if is_switch(loaded, row["role"]):
                self.switches += 1
                store.add_event(sid, "dit_switch",
                                f"worker {self.worker_id} loads the {dit_kind(row['role'])} DiT "
                                f"for chunk {idx} (no {loaded} chunk ready; switch "
                                f"{self.switches})", chunk_idx=idx, worker_id=self.worker_id)
            beat.reset_peak()
            result = job.run_chunk(idx, seed=row["seed"],
                                   should_stop=lambda: beat.desired != "run")
            if result is None:
                store.release_chunk(sid, idx)
                store.add_event(sid, "chunk_paused", f"chunk {idx} left at a step boundary",
                                chunk_idx=idx, worker_id=self.worker_id)
                self.chunk = None
                job.release_models()
                continue
            self.finish(job, idx, nvml_peak=beat.nvml_peak or None)
            self.chunk = None

    def finish(self, job, idx: int, recovered: bool = False, nvml_peak: int | None = None
               ) -> None:
        done = json.loads((job.chunk_dir(idx) / "done.json").read_text())
        recorded = self.store.finish_chunk(
            self.session_id, idx, seconds=done.get("seconds"),
            seconds_per_step=done.get("seconds_per_step"),
            peak_vram_torch=done.get("peak_vram_bytes"), peak_vram_nvml=nvml_peak,
            budget=str(done.get("extra", {}).get("budget")), worker_id=self.worker_id)
        self.chunk = None
        if not recorded:  # declared lost meanwhile; the chunk's new owner records it
            return
        what = "found finished on disk" if recovered else "done"
        self.store.add_event(self.session_id, "chunk_done", f"chunk {idx} {what}",
                             chunk_idx=idx, worker_id=self.worker_id)

    def merge_once(self, job) -> None:
        """Merge under a file lock so two workers finishing together merge once."""
        lock_path = Path(job.out) / ".merge.lock"
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not job.video_path.exists():
                self.store.set_session_state(self.session_id, "merging")
                job.merge()

    def settle_state(self) -> None:
        """The last worker out sets the session's resting state."""
        store, sid = self.store, self.session_id
        if store.workers(sid, live_only=True):
            return
        session = store.get_session(sid)
        chunks = store.chunks(sid)
        video = Path(session["workspace"]) / "video.mp4"
        if chunks and all(c["status"] == "done" for c in chunks) and video.exists():
            state = "done"
        elif session["state"] == "failed":
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


def describe_error(e: BaseException) -> str:
    """One line that says what happened and what to do next."""
    full = isinstance(e, OSError) and e.errno == errno.ENOSPC
    if full or "No space left" in str(e) or "StorageFull" in str(e):
        where = f" while writing {e.filename}" if getattr(e, "filename", None) else ""
        return (f"disk full{where}: free space on that disk, then `posegen resume SESSION` "
                "(finished chunks are kept)")
    text = f"{type(e).__name__}: {e}"
    if "out of memory" in str(e).lower():
        return (f"{text.splitlines()[0]} -- lower the GPU budget (-p, e.g. 2e9) with a new "
                "session, or free the GPU, then `posegen resume SESSION`")
    return text.splitlines()[0] if text else repr(e)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sessions.worker")
    p.add_argument("--session", type=int, required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: default)")
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return Worker(args.session, args.device).run()


if __name__ == "__main__":
    sys.exit(main())
