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
from sessions.executor import drive
from sessions.paths import db_path
from sessions.records import (  # noqa: F401  (re-exported: worker.describe_error, ...)
    HEARTBEAT_S,
    WORKER_TIMEOUT_S,
    WorkerRecord,
    describe_error,
    log,
    mark_running,
    send_heartbeat,
    settle_state,
    store_plan,
)
from sessions.session_job import job_for
from sessions.store import Store


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
        if not send_heartbeat(store, self.worker_id, **numbers):
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
        self.record = WorkerRecord(self.store, session_id, device)
        self.chunk: int | None = None

    @property
    def worker_id(self) -> int:
        return self.record.worker_id

    @property
    def switches(self) -> int:
        return self.record.switches

    # progress from the engine: one short write per step
    def on_progress(self, e: ProgressEvent) -> None:
        self.record.progress(e)

    def run(self) -> int:
        store, sid = self.store, self.session_id
        session = store.get_session(sid)
        project = store.get_project(session["project_id"])
        self.record.register(pid=os.getpid(), host=socket.gethostname())
        log(f"worker {self.worker_id} for session {sid} on {self.device}")
        heart = Heartbeat(self.db, sid, self.worker_id, self.device)
        heart.start()
        reason = "finished"
        try:
            job = job_for(session, project, self.device, progress=self.on_progress)
            plan = job.prepare()
            store_plan(store, sid, plan, job.settings.steps)
            reason = self.loop(job, heart)
        except Exception as e:
            reason = "error"
            msg = describe_error(e, sid)
            log(f"error: {msg}\n{traceback.format_exc()}")
            self.record.fail(self.chunk, msg)
        finally:
            heart.halt.set()
            self.record.end(reason)
            settle_state(store, sid)
            log(f"worker {self.worker_id} exits: {reason}")
        return 0 if reason in ("finished", "paused", "stopped", "done") else 1

    def loop(self, job: Any, beat: Heartbeat) -> str:
        mark_running(self.store, self.session_id)
        return drive(self.store, self.session_id, job, InlinePlacement(self, job, beat))


class InlinePlacement:
    """The local worker's placement: one worker, its chunks run in this process."""

    def __init__(self, worker: Worker, job: Any, beat: Heartbeat) -> None:
        self.worker, self.job, self.beat = worker, job, beat

    @property
    def lost(self) -> bool:
        return self.beat.desired == "lost" or self.worker.record.lost_claim

    def refresh(self, desired: str) -> None:
        pass  # the heartbeat thread reads the session's wish for should_stop

    def idle(self) -> list[tuple[WorkerRecord, str | None]]:
        return [(self.worker.record, self.job.loaded_dit)]

    def launch(self, record: WorkerRecord, row: dict[str, Any]) -> None:
        job, beat, idx = self.job, self.beat, row["idx"]
        self.worker.chunk = idx
        beat.reset_peak()
        result = job.run_chunk(
            idx, seed=row["seed"],
            should_stop=lambda: beat.desired != "run" or record.lost_claim)
        if record.lost_claim:
            return  # reclaimed while stopped: the chunk is another worker's now
        if result is None:
            record.paused(idx)
            job.release_models()  # a paused worker holds no GPU memory
        else:
            record.finish(idx, job.workspace.done_record(idx),
                          nvml_peak=beat.nvml_peak or None)
        self.worker.chunk = None

    def busy(self) -> bool:
        return False  # a chunk runs inline, to its end, inside launch

    def check_workers(self) -> None:
        pass  # this process is the worker

    def wait(self) -> None:
        time.sleep(min(HEARTBEAT_S, 1.0))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sessions.worker")
    p.add_argument("--session", type=int, required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: default)")
    args = p.parse_args(argv)
    from engine.compat import configure_cuda_allocator

    configure_cuda_allocator()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return Worker(args.session, args.device).run()


if __name__ == "__main__":
    sys.exit(main())
