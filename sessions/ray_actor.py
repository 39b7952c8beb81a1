"""One Ray actor per GPU: holds a session's Job with its models loaded and runs chunks.

The driver (`sessions/ray_driver.py`) creates it, hands it chunks and polls it.
An actor never opens the database: its progress events, memory readings and
results go back to the driver through `poll` and `run_chunk`'s return value.
It is threaded (`max_concurrency` > 1), so `poll` and `set_desired` reach it
while `run_chunk` is busy, and a pause stops the chunk at its next step.

This module does not import Ray: `sessions/ray_driver.py` wraps `ChunkActor`
with `ray.remote` (so the package works without the `ray` extra).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from engine.gpu_info import device_memory
from engine.progress import ProgressEvent

CHECK_FILE = ".posegen-ray-check"
DOCS = "docs/cluster.md"


def check_paths(token_path: str, token: str, paths: dict[str, str]) -> list[str]:
    """What this node cannot see: the driver's token in the workspace, and each path.

    Returns one line per problem, naming the path (empty when all is visible).
    """
    problems = []
    try:
        seen = Path(token_path).read_text().strip()
    except OSError as e:
        problems.append(f"the session workspace {Path(token_path).parent} (cannot read "
                        f"{Path(token_path).name}: {e.strerror or e})")
    else:
        if seen != token:
            problems.append(f"the session workspace {Path(token_path).parent} (it holds "
                            "another check token: this node mounts a different folder there)")
    for what, path in paths.items():
        p = Path(path)
        try:
            ok = p.is_dir() and any(p.iterdir()) if what == "checkpoint" else p.is_file()
        except OSError:
            ok = False
        if not ok:
            problems.append(f"the {what} {path} (not found)")
    return problems


def node_label(host: str, ip: str | None) -> str:
    return f"{host} ({ip})" if ip and ip != host else host


class ChunkActor:
    """The worker side of the Ray executor (wrapped with ``ray.remote`` by the driver)."""

    def __init__(self, session: dict[str, Any], project: dict[str, Any], device: str,
                 threads: int = 0) -> None:
        from engine.compat import configure_cuda_allocator

        configure_cuda_allocator()  # before this process's first CUDA allocation
        self.session, self.project, self.device = session, project, device
        self.threads = threads
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.node_id, self.ip = self._node()
        self.nvml_index = self._nvml_index()
        self.job: Any = None
        self.desired = "run"
        self.nvml_peak = 0
        self._events: list[ProgressEvent] = []
        self._running = False
        self._cond = threading.Condition()

    @staticmethod
    def _node() -> tuple[str | None, str | None]:
        """This actor's Ray node: its id and the address it joined the cluster with."""
        try:
            import ray

            node_id = ray.get_runtime_context().get_node_id()
            ips = {n["NodeID"]: n.get("NodeManagerAddress") for n in ray.nodes()}
            return node_id, ips.get(node_id) or ray.util.get_node_ip_address()
        except Exception:
            return None, None

    def _nvml_index(self) -> int | None:
        """The GPU's NVML (physical) index: Ray renumbers CUDA devices, NVML does not."""
        if not self.device.startswith("cuda"):
            return None
        try:
            import ray

            ids = ray.get_gpu_ids()
            return int(ids[0]) if ids else None
        except Exception:
            return None

    # -- setup -----------------------------------------------------------------------
    def setup(self, token_path: str, token: str, paths: dict[str, str]) -> dict[str, Any]:
        """Check this node sees the shared paths, then build and prepare the Job.

        Returns who we are (pid, host, ip, device label) and ``problem``: None, or a
        message that names this node, what it cannot see and the fix.
        """
        info = {"pid": self.pid, "host": self.host, "ip": self.ip, "node_id": self.node_id,
                "device": self.device_label(), "problem": None}
        missing = check_paths(token_path, token, paths)
        if missing:
            info["problem"] = (
                f"node {node_label(self.host, self.ip)} cannot see {'; '.join(missing)}: "
                "the checkpoint, the inputs and $POSEGEN_HOME/sessions must be on a "
                "shared folder mounted at the same path on every node (NFS or similar); "
                f"see {DOCS}")
            return info
        from sessions.session_job import job_for

        self.job = job_for(self.session, self.project, self.device, progress=self._on_progress)
        self.job.prepare()
        return info

    def device_label(self) -> str:
        """The device for the workers row: the physical GPU when Ray says which."""
        if self.nvml_index is not None:
            return f"cuda:{self.nvml_index}"
        return self.device

    # -- work ------------------------------------------------------------------------
    def set_desired(self, desired: str) -> None:
        """run / pause / stop; anything but run stops a chunk at its next step boundary."""
        self.desired = desired

    def run_chunk(self, idx: int, seed: int | None) -> dict[str, Any] | None:
        """Generate chunk ``idx`` from its last saved step; its done.json, or None if
        stopped early (the step is kept on disk)."""
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        self.nvml_peak = 0
        job = self.job
        self._running = True
        try:
            result = job.run_chunk(idx, seed=seed, should_stop=lambda: self.desired != "run")
        finally:
            with self._cond:  # wake a waiting poll: the driver collects the last events
                self._running = False
                self._cond.notify_all()
        if result is None:
            job.release_models()  # a paused actor holds no GPU memory
            return None
        done = job.workspace.done_record(idx)
        return {"done": done, "nvml_peak": self.nvml_peak or None, "loaded": job.loaded_dit}

    def _on_progress(self, e: ProgressEvent) -> None:
        with self._cond:
            self._events.append(e)
            self._cond.notify_all()

    def poll(self, wait_s: float = 0.5) -> dict[str, Any]:
        """Progress events since the last poll (waits up to ``wait_s`` for one) and memory."""
        with self._cond:
            if not self._events and wait_s > 0 and self._running:
                self._cond.wait(wait_s)
            events, self._events = self._events, []
        return {"events": events, "memory": self.memory(), "t": time.time(),
                "loaded": self.job.loaded_dit if self.job is not None else None}

    def memory(self) -> dict[str, Any]:
        """torch and NVML numbers for the heartbeat and the GPU samples (empty on CPU)."""
        numbers: dict[str, Any] = {}
        if self.device.startswith("cuda"):
            import torch

            if torch.cuda.is_available():
                numbers["torch_allocated"] = int(torch.cuda.memory_allocated(self.device))
                numbers["torch_peak"] = int(torch.cuda.max_memory_allocated(self.device))
        mem = device_memory(self.nvml_index) if self.nvml_index is not None else None
        if mem is not None:
            numbers["nvml_used"], numbers["nvml_total"] = mem.used, mem.total
            numbers["sample"] = {"device_index": mem.index, "used": mem.used,
                                 "total": mem.total, "util": mem.util, "temp": mem.temp}
            self.nvml_peak = max(self.nvml_peak, mem.used)
        return numbers
