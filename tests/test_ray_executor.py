"""The Ray executor on a real (local, one-node) Ray cluster, through the real `posegen` CLI.

One Ray head is started for the module (`ray start --head --block`, loopback only, token
auth off) with two units of a custom resource standing in for GPUs; each test's driver
connects to it like a driver on a cluster's head host would. The actors run on the CPU
with one torch thread, and so does the one-process reference run: with the same thread
count the float sums happen in the same order and the frames are bit-identical.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import generate_args, run
from sessions_helpers import init_project, make_session, ok, posegen, status

from engine.media import load_frames
from engine.sample_inputs import write_sample_inputs
from sessions.paths import db_path
from sessions.store import Store

STEPS = "6"
SEVEN_FRAMES = 92  # 17-frame chunks, 5/4 overlaps: 7 chunks cover 7*17 - 3*9 = 92 frames
RESOURCE = "posegen_gpu"
# Loopback only (Ray otherwise advertises the host's routable address), no token auth,
# no usage report.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "RAY_USAGE_STATS_ENABLED": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """A one-node Ray cluster with two fake GPUs; yields its address."""
    with pytest.MonkeyPatch.context() as mp:
        for k, v in RAY_ENV.items():
            mp.setenv(k, v)
        port = free_port()
        temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # socket paths must stay short
        exe = Path(sys.executable).with_name("ray")
        log = open(Path(temp) / "head.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [str(exe), "start", "--head", "--block", f"--port={port}",
             "--node-ip-address=127.0.0.1", "--num-cpus=2",
             f"--resources={json.dumps({RESOURCE: 2})}", "--include-dashboard=false",
             "--object-store-memory=100000000",
             "--disable-usage-stats", f"--temp-dir={temp}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            end = time.monotonic() + 90
            while b"Ray runtime started" not in (Path(temp) / "head.log").read_bytes():
                assert proc.poll() is None, (Path(temp) / "head.log").read_text()
                assert time.monotonic() < end, "ray start --head did not come up in 90 s"
                time.sleep(0.2)
            yield f"127.0.0.1:{port}"
        finally:
            proc.terminate()  # `ray start --block` stops its node's processes on SIGTERM
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()
            shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def seven_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("inputs7")
    write_sample_inputs(root, frames=SEVEN_FRAMES, fps=30, height=128, width=64)
    return root


@pytest.fixture(scope="module")
def seven_reference(tiny_ckpt: Path, seven_inputs: Path,
                    tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One process, one torch thread, no Ray: what every Ray run must reproduce exactly."""
    out = tmp_path_factory.mktemp("reference7")
    os.environ["OMP_NUM_THREADS"], before = "1", os.environ.get("OMP_NUM_THREADS")
    try:
        proc = run(generate_args(tiny_ckpt, seven_inputs, out, "--steps", STEPS))
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS")
        else:
            os.environ["OMP_NUM_THREADS"] = before
    assert proc.returncode == 0, proc.stderr
    assert len(list((out / "chunks").iterdir())) == 7
    return out


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, seven_inputs: Path, ray_head: str) -> Path:
    h = tmp_path_factory.mktemp("home")
    init_project(h, seven_inputs, "seven")
    return h


def ray_args(address: str, actors: int = 2) -> list[str]:
    return ["--executor", "ray", "--address", address, "--ray-actors", str(actors),
            "--ray-resource", RESOURCE, "--ray-device", "cpu", "--ray-threads", "1"]


def frames_of(workspace: Path) -> list[np.ndarray]:
    return [load_frames(d / "frames.npy") for d in sorted((workspace / "chunks").iterdir())]


def assert_same_frames(workspace: Path, reference: Path) -> None:
    got, want = frames_of(workspace), frames_of(reference)
    assert len(got) == len(want) == 7
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


def events(home: Path, sid: int) -> list[dict]:
    return Store(db_path(home)).events(sid, limit=100000)


def assert_dependency_order(home: Path, sid: int) -> None:
    """Every chunk_start comes after the chunk_done of each chunk it depends on."""
    deps = {c["idx"]: c["deps"] for c in Store(db_path(home)).chunks(sid)}
    done: set[int] = set()
    starts = 0
    for e in events(home, sid):
        if e["kind"] == "chunk_done":
            done.add(e["chunk_idx"])
        elif e["kind"] == "chunk_start":
            starts += 1
            missing = [d for d in deps[e["chunk_idx"]] if d not in done]
            assert not missing, f"chunk {e['chunk_idx']} started before chunks {missing} were done"
    assert starts >= 7


def assert_each_chunk_done_once(home: Path, sid: int) -> None:
    evs = events(home, sid)
    assert Counter(e["chunk_idx"] for e in evs if e["kind"] == "chunk_done") == Counter(range(7))
    for idx in range(7):
        done_at = next(e["id"] for e in evs if e["kind"] == "chunk_done" and e["chunk_idx"] == idx)
        assert not [e for e in evs if e["kind"] == "chunk_start" and e["chunk_idx"] == idx
                    and e["id"] > done_at], f"chunk {idx} started again after it was done"


@pytest.mark.ray
@pytest.mark.slow
def test_two_actors_match_a_one_worker_run(home: Path, tiny_ckpt: Path, ray_head: str,
                                           seven_reference: Path) -> None:
    sid = make_session(home, tiny_ckpt, "seven", "--steps", STEPS)
    out = ok(posegen(home, "start", str(sid), *ray_args(ray_head)))
    assert "2 Ray actor(s)" in out, out
    ok(posegen(home, "wait", str(sid), "--timeout", "300"))
    snap = status(home, sid)
    assert snap["state"] == "done", snap
    assert [c["status"] for c in snap["chunks"]] == ["done"] * 7
    assert snap["video"]
    workers = snap["workers"]
    assert len(workers) == 2 and {w["end_reason"] for w in workers} == {"done"}
    assert {w["host"] for w in workers} == {socket.gethostname()}
    assert len({w["pid"] for w in workers}) == 2
    assert_same_frames(Path(snap["workspace"]), seven_reference)
    assert_dependency_order(home, sid)
    assert_each_chunk_done_once(home, sid)
    evs = events(home, sid)
    starts = {e["worker_id"] for e in evs if e["kind"] == "chunk_start"}
    assert starts == {w["id"] for w in workers}, "both actors should have generated chunks"
    assert any(e["kind"] == "merged" for e in evs)
    store = Store(db_path(home))
    assert json.loads(store.last_event(sid, "executor")["message"])["kind"] == "ray"
    rows = store.chunks(sid)
    assert all(r["seconds_per_step"] and r["seconds_per_step"] > 0 for r in rows)


@pytest.mark.ray
@pytest.mark.slow
def test_killed_actor_loses_no_finished_chunk(home: Path, tiny_ckpt: Path, ray_head: str,
                                              seven_reference: Path) -> None:
    """SIGKILL an actor once its chunk has reported a step: the chunk resumes elsewhere."""
    steps = int(STEPS)
    sid = make_session(home, tiny_ckpt, "seven", "--steps", STEPS)
    store = Store(db_path(home))
    workspace = Path(store.get_session(sid)["workspace"])
    ok(posegen(home, "start", str(sid), *ray_args(ray_head)))
    victim = None
    end = time.monotonic() + 120
    while victim is None and time.monotonic() < end:
        chunks = store.chunks(sid)
        if any(c["status"] == "done" for c in chunks):
            for c in chunks:
                if c["status"] == "running" and 1 <= (c["step"] or 0) <= steps - 2:
                    victim = c
                    break
        if victim is None:
            time.sleep(0.01)
    assert victim is not None, "no chunk was seen mid-way after a finished one"
    finished = {p.parent.name: p.read_text() for p in workspace.glob("chunks/*/done.json")}
    worker = next(w for w in store.workers(sid) if w["id"] == victim["worker_id"])
    os.kill(worker["pid"], signal.SIGKILL)

    ok(posegen(home, "wait", str(sid), "--timeout", "300"))
    assert status(home, sid)["state"] == "done"
    for name, text in finished.items():  # finished chunks were never touched again
        assert (workspace / "chunks" / name / "done.json").read_text() == text
    rows = {w["id"]: w for w in store.workers(sid)}
    assert rows[worker["id"]]["end_reason"] == "lost"
    evs = events(home, sid)
    assert [e for e in evs if e["kind"] == "reclaimed" and e["chunk_idx"] == victim["idx"]]
    # It went on from its saved step, not from 0.
    redone = json.loads((workspace / "chunks" / f"{victim['idx']:03d}" / "done.json").read_text())
    assert redone["steps_run"] < steps
    assert_each_chunk_done_once(home, sid)
    assert_dependency_order(home, sid)
    assert_same_frames(workspace, seven_reference)


@pytest.mark.ray
@pytest.mark.slow
def test_pause_then_resume_restarts_the_ray_driver(home: Path, tiny_ckpt: Path, ray_head: str,
                                                   seven_reference: Path) -> None:
    sid = make_session(home, tiny_ckpt, "seven", "--steps", STEPS)
    store = Store(db_path(home))
    ok(posegen(home, "start", str(sid), *ray_args(ray_head)))
    end = time.monotonic() + 120
    # Pause once a chunk is claimed: its models load for seconds, and the pause is
    # honoured at the next phase or step boundary, so that chunk is caught mid-way (a
    # few tiny 50 ms steps would often finish before the pause arrives).
    while not any(c["status"] == "running" for c in store.chunks(sid)) \
            and time.monotonic() < end:
        time.sleep(0.01)
    ok(posegen(home, "pause", str(sid)))
    waited = posegen(home, "wait", str(sid), "--timeout", "120")
    assert "paused" in waited.stdout, waited.stdout + waited.stderr
    assert not store.workers(sid, live_only=True), "a paused session keeps no actor"
    assert not [c for c in store.chunks(sid) if c["status"] == "running"]
    assert [e for e in events(home, sid) if e["kind"] == "chunk_paused"]
    # No executor option: resume uses the one the session was started with.
    out = ok(posegen(home, "resume", str(sid)))
    assert "Ray" in out, out
    ok(posegen(home, "wait", str(sid), "--timeout", "300"))
    assert status(home, sid)["state"] == "done"
    assert len([e for e in events(home, sid) if e["kind"] == "ray_ready"]) == 2
    assert_each_chunk_done_once(home, sid)
    assert_same_frames(Path(store.get_session(sid)["workspace"]), seven_reference)


@pytest.mark.ray
def test_a_node_that_cannot_see_a_shared_path_fails_the_start(
        home: Path, tiny_ckpt: Path, ray_head: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver asks every actor to check a path it cannot see (as on a node where the
    checkpoint folder is not mounted): the session fails with a line naming the node, the
    path and the fix, and no actor gets work."""
    from sessions import ray_driver

    sid = make_session(home, tiny_ckpt, "seven", "--steps", STEPS)
    missing = tmp_path / "not-mounted" / "posegen-ckpt"
    real = ray_driver.RayDriver.shared_paths
    monkeypatch.setattr(ray_driver.RayDriver, "shared_paths", lambda self, session, project: {
        **real(self, session, project), "checkpoint": str(missing)})
    store = Store(db_path(home))
    store.request(sid, "run")
    opts = ray_driver.RayOptions(address=ray_head, actors=2, resource=RESOURCE, device="cpu",
                                 threads=1)
    assert ray_driver.RayDriver(sid, opts, home=home).run() == 1
    session = store.get_session(sid)
    assert session["state"] == "failed"
    error = session["error"]
    assert f"node {socket.gethostname()}" in error and str(missing) in error, error
    assert "same path on every node" in error and "docs/cluster.md" in error, error
    assert not store.workers(sid), "no actor may be registered when a node cannot see a path"
    assert {c["status"] for c in store.chunks(sid)} <= {"ready", "pending"}, "no chunk ran"


def test_check_paths_names_what_a_node_cannot_see(tmp_path: Path) -> None:
    from sessions.ray_actor import check_paths

    token = tmp_path / ".posegen-ray-check"
    token.write_text("abc\n")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "Wan2.1_VAE.pth").write_bytes(b"x")
    image = tmp_path / "ref.png"
    image.write_bytes(b"x")
    assert check_paths(str(token), "abc", {"checkpoint": str(ckpt), "image": str(image)}) == []
    # Another folder mounted at the workspace's path, an empty mount point, a missing file.
    empty = tmp_path / "empty"
    empty.mkdir()
    problems = check_paths(str(token), "xyz", {"checkpoint": str(empty),
                                               "image": str(tmp_path / "gone.png")})
    assert len(problems) == 3
    assert "another check token" in problems[0] and str(tmp_path) in problems[0]
    assert str(empty) in problems[1] and "gone.png" in problems[2]
    assert "cannot read" in check_paths(str(tmp_path / "nope" / "t"), "abc", {})[0]


@pytest.mark.ray  # `home` starts the Ray head
def test_without_ray_installed_start_says_how_to_install(home: Path, tiny_ckpt: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from sessions import control
    from sessions.store import StoreError

    sid = make_session(home, tiny_ckpt, "seven", "--steps", STEPS)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(StoreError, match=r"pip install 'posegen-tui\[ray\]'"):
        control.start_ray_driver(Store(db_path(home)), sid, {"address": "auto"}, home)
    assert Store(db_path(home)).get_session(sid)["state"] == "created"


@pytest.mark.ray  # `home` starts the Ray head
def test_ray_options_need_the_ray_executor(home: Path, tiny_ckpt: Path) -> None:
    sid = make_session(home, tiny_ckpt, "seven", "--steps", STEPS)
    proc = posegen(home, "start", str(sid), "--executor", "local", "--ray-actors", "2")
    assert proc.returncode == 2 and "--executor ray" in proc.stderr, proc.stderr
    proc = posegen(home, "start", str(sid), "--executor", "ray", "--gpus", "0,1")
    assert proc.returncode == 2 and "--ray-actors" in proc.stderr, proc.stderr


def test_a_private_ray_listens_on_loopback_only(tmp_path: Path) -> None:
    """Issue #14, defect 8: `--address local` must not open Ray to the network."""
    from sessions.ray_driver import RayDriver, RayOptions

    calls: list[dict] = []

    class FakeRay:
        def init(self, **kwargs: object) -> None:
            calls.append(kwargs)

    for address in ("local", "auto"):
        driver = RayDriver(1, RayOptions(address=address), home=tmp_path)
        driver.ray = FakeRay()
        driver._connect()
    local, auto = calls
    assert local["address"] is None and local["_node_ip_address"] == "127.0.0.1"
    assert local["include_dashboard"] is False
    assert auto["address"] == "auto" and "_node_ip_address" not in auto
