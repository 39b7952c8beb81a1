"""A fixed store for snapshots: projects, sessions in every state, workers, GPU samples.

Everything goes through the public Store API under a fake clock, so ages, ETAs
and event times come out the same on every run (the tests pin TZ=UTC too).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np

from engine.chunk_plan import ChunkSpec, make_plan
from sessions.control import log_path
from sessions.paths import db_path, workspace_dir
from sessions.store import Store

NOW = 1_760_000_000.0  # 2025-10-09 08:53:20 UTC
GIB = 2**30
SETTINGS = {"height": 1280, "width": 720, "frames": 81, "head": 21, "tail": 20, "steps": 25,
            "cfg_scale": 5.0, "seed": 42, "share_steps": [0, 2], "share_blocks": [34, 40],
            "anchor": 0, "num_chunks": None, "pad": True}


class Clock:
    """Stands in for time.time: set ``t`` to move it."""

    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def plan_rows(frames: int, steps: int) -> list[dict]:
    plan = make_plan(frames, ChunkSpec())
    return [{"idx": c.index, "role": c.role, "start_frame": c.start, "end_frame": c.end,
             "deps": list(plan.dependencies(c.index)), "steps": steps} for c in plan.chunks]


def frames_array(seed: int, n: int = 9, h: int = 64, w: int = 36) -> np.ndarray:
    """A little scene: sky, floor and a figure that moves across the frames."""
    y = np.linspace(0, 1, h)[:, None, None]
    sky = np.concatenate([80 + 100 * y, 120 + 80 * y, 200 - 40 * y], axis=2)
    img = np.broadcast_to(sky, (h, w, 3)).copy()
    img[int(h * 0.75):] = (90 + 10 * seed % 40, 70, 50)
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        f = img.copy()
        cx = w * (0.3 + 0.4 * i / max(n - 1, 1))
        head = (yy - h * 0.3) ** 2 + (xx - cx) ** 2 < (h * 0.07) ** 2
        body = (abs(xx - cx) < w * 0.12) & (yy > h * 0.37) & (yy < h * 0.72)
        f[head] = (230, 190, 160)
        f[body] = (200, 40 + 20 * (seed % 5), 60)
        out[i] = f
    return out


def write_chunk_files(workspace: Path, idx: int, done: bool) -> None:
    folder = workspace / "chunks" / f"{idx:03d}"
    folder.mkdir(parents=True, exist_ok=True)
    if done:
        np.save(folder / "frames.npy", frames_array(idx))
        (folder / "chunk.mp4").write_bytes(b"\0" * 48_213)
        (folder / "done.json").write_text(json.dumps({"index": idx, "steps_run": 25}))
    else:
        (folder / "state.safetensors").write_bytes(b"\0" * 1_310_720)


def build(home: Path, clock: Clock) -> None:
    store = Store(db_path(home))
    host = socket.gethostname()

    clock.t = NOW - 3 * 86400
    dance = store.create_project("dance", image="/data/dance/ref.png",
                                 pose="/data/dance/pose.mp4", hand="/data/dance/hand.mp4",
                                 prompt="a woman in a red dress dances in a sunlit studio",
                                 framing="half-body")
    clock.t = NOW - 2 * 86400
    walk = store.create_project("walk", image="/data/walk/ref.png", pose="/data/walk/pose.mp4",
                                hand="/data/walk/hand.mp4",
                                prompt="a man in a grey coat walks down a street",
                                framing="full-body")

    def session(project: int, budget: str, device: str, name: str | None = None) -> int:
        sid = store.create_session(project, settings=SETTINGS, seed=42, steps=25, cfg=5.0,
                                   share_steps="0 2", share_blocks="34 40", anchor=0,
                                   budget=budget, ckpt=str(home / "ckpt"), device=device,
                                   gpus=device.removeprefix("cuda:"), workspace="", name=name)
        store.set_workspace(sid, str(workspace_dir(sid, home)))
        return sid

    def run(sid: int, wid: int, idx: int, t0: float, sps: float, peak: float,
            budget: str) -> float:
        clock.t = t0
        got = store.claim_chunk(sid, wid)
        assert got is not None and got["idx"] == idx, (got, idx)
        store.add_event(sid, "chunk_start", f"chunk {idx} ({got['role']}) started on cuda:0",
                        chunk_idx=idx, worker_id=wid)
        clock.t = t0 + 25 * sps
        store.finish_chunk(sid, idx, seconds=25 * sps, seconds_per_step=sps,
                           peak_vram_torch=int(peak * GIB), peak_vram_nvml=int((peak + 3) * GIB),
                           budget=budget, worker_id=wid)
        store.add_event(sid, "chunk_done", f"chunk {idx} done", chunk_idx=idx, worker_id=wid)
        write_chunk_files(Path(store.get_session(sid)["workspace"]), idx, done=True)
        return clock.t + 2

    # Session 1: running on cuda:0, chunk 6 at step 14/25.
    clock.t = NOW - 5400
    s1 = session(dance, "4e9", "cuda:0", name="take-1")
    store.init_chunks(s1, plan_rows(560, 25))
    store.set_session_state(s1, "running")
    store.add_event(s1, "start", "started 1 worker(s) on cuda:0 (pid 4242)")
    w1 = store.register_worker(s1, pid=4242, host="gpu-box", device="cuda:0")
    store.add_event(s1, "worker_start", "worker 1 (pid 4242) on cuda:0", worker_id=w1)
    t = NOW - 5300
    for idx, sps, peak in ((0, 52.0, 14.6), (2, 41.0, 14.1), (4, 40.6, 14.2)):
        t = run(s1, w1, idx, t, sps, peak, "4e9")
    clock.t = t
    assert store.claim_chunk(s1, w1)["idx"] == 6
    store.add_event(s1, "chunk_start", "chunk 6 (base) started on cuda:0", chunk_idx=6,
                    worker_id=w1)
    ws1 = Path(store.get_session(s1)["workspace"])
    write_chunk_files(ws1, 6, done=False)
    anchor = ws1 / "cache" / "anchor"
    anchor.mkdir(parents=True, exist_ok=True)
    for i, size in enumerate((812_000_000, 812_000_000, 4_096, 2_048)):
        with open(anchor / f"part{i}.safetensors", "wb") as f:
            f.truncate(size)  # sparse: sizes without the disk use
    clock.t = NOW - 20
    store.chunk_progress(s1, 6, step=14, steps=25, seconds_per_step=40.9, eta_seconds=470.0,
                         worker_id=w1)
    clock.t = NOW - 1
    store.heartbeat(w1, torch_allocated=int(12.8 * GIB), torch_peak=int(14.3 * GIB),
                    nvml_used=int(31.5 * GIB), nvml_total=80 * GIB)
    log = log_path(s1, 0, home)
    log.write_text("".join(
        f"2025-10-09 07:{m:02d}:00 {line}\n" for m, line in enumerate((
            "worker 1 for session 1 on cuda:0", "conditions ready (T5, CLIP, reference)",
            "chunk 0 anchor: 25 steps, 52.0 s/step", "chunk 2 base: 25 steps, 41.0 s/step",
            "chunk 4 base: 25 steps, 40.6 s/step", "chunk 6 base: step 14/25"))))

    # Session 2: stopped after three chunks at a smaller budget (tuning points).
    clock.t = NOW - 2 * 86400 + 600
    s2 = session(dance, "2e9", "cuda:1")
    store.init_chunks(s2, plan_rows(560, 25))
    w2 = store.register_worker(s2, pid=4343, host="gpu-box", device="cuda:1")
    t = clock.t + 60
    for idx, sps, peak in ((0, 61.0, 10.4), (2, 55.2, 10.2), (4, 54.9, 10.3)):
        t = run(s2, w2, idx, t, sps, peak, "2e9")
    clock.t = t
    store.end_worker(w2, "stopped")
    store.set_session_state(s2, "stopped")

    # Session 3: failed chunk 4 (out of memory), chunk 2 retried so chunk 1 is stale.
    clock.t = NOW - 86400
    s3 = session(walk, "none", "cuda:0")
    store.init_chunks(s3, plan_rows(300, 25))
    w3 = store.register_worker(s3, pid=4444, host="gpu-box", device="cuda:0")
    t = clock.t + 60
    for idx in (0, 2):
        t = run(s3, w3, idx, t, 44.0, 22.5, "None")
    clock.t = t
    assert store.claim_chunk(s3, w3)["idx"] == 4
    oom = ("OutOfMemoryError: CUDA out of memory. Tried to allocate 2.1 GiB -- lower the GPU "
           "budget (-p, e.g. 2e9) with a new session, or free the GPU, then `posegen resume "
           "SESSION`")
    store.fail_chunk(s3, 4, oom, worker_id=w3)
    store.add_event(s3, "error", oom, chunk_idx=4, worker_id=w3)
    t = run(s3, w3, 1, t + 5, 45.5, 22.9, "None")
    clock.t = t
    store.end_worker(w3, "error")
    store.set_session_state(s3, "failed", error=oom)
    store.retry_chunk(s3, 2, seed=7)
    store.add_event(s3, "retry", "chunk 2 again with seed 7; also invalidated [1]")

    # Session 4: archived (hidden unless A); session 5: created, never started.
    clock.t = NOW - 86400 + 300
    s4 = session(walk, "none", "cpu")
    store.archive_session(s4)
    clock.t = NOW - 600
    session(dance, "4e9", "cuda:0", name="take-2")

    # Memory samples of this host over the last half hour.
    samples = []
    for i in range(60):
        t = NOW - 1800 + 30 * i
        ramp = min(1.0, i / 20)
        samples.append({"host": host, "device_index": 0, "t": t,
                        "used": int((2 + 29.5 * ramp + (i % 4) * 0.3) * GIB), "total": 80 * GIB,
                        "util": 80.0, "temp": 60.0})
        samples.append({"host": host, "device_index": 1, "t": t, "used": int(0.6 * GIB),
                        "total": 80 * GIB, "util": 0.0, "temp": 31.0})
    store.add_gpu_samples(samples)
    store.close()
