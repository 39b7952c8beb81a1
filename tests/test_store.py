"""The session store against real SQLite files: plans, claims, retries, crashes, migrations."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlite_utils import Database

from sessions import paths, schema
from sessions.store import Store, StoreError

HOST = socket.gethostname()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "posegen.db"


@pytest.fixture
def store(db: Path) -> Store:
    with Store(db) as s:
        yield s


def new_session(store: Store, project: str = "dance") -> int:
    try:
        pid = store.get_project(project)["id"]
    except StoreError:
        pid = store.create_project(project, image="ref.png", pose="pose.mp4", hand="hand.mp4",
                                   prompt="a dancer", framing="half-body")
    return store.create_session(
        pid, settings={"frames": 81, "pad": True}, seed=42, steps=4, cfg=5.0,
        share_steps=[0, 2], share_blocks="34 40", anchor=0, budget="4e9", ckpt="/ckpt",
        device="cuda:0", gpus=[0, 1], workspace="/tmp/ws")


def plan(k: int, anchor: int = 0, steps: int = 4) -> list[dict]:
    """The engine's dependency shape: bases read the anchor, conds both neighbours."""
    out = []
    for i in range(k):
        role = "anchor" if i == anchor else ("base" if i % 2 == 0 else "cond")
        deps = [] if role == "anchor" else ([anchor] if role == "base" else [i - 1, i + 1])
        out.append({"idx": i, "role": role, "start_frame": 60 * i, "end_frame": 60 * i + 81,
                    "deps": deps, "steps": steps})
    return out


def worker(store: Store, sid: int, pid: int | None = None, host: str = HOST) -> int:
    return store.register_worker(sid, pid=os.getpid() if pid is None else pid, host=host,
                                 device="cuda:0")


def statuses(store: Store, sid: int) -> list[str]:
    return [c["status"] for c in store.chunks(sid)]


def test_paths_follow_posegen_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSEGEN_HOME", str(tmp_path / "h"))
    assert paths.home() == tmp_path / "h"
    assert paths.db_path() == tmp_path / "h" / "posegen.db"
    ws = paths.workspace_dir(7)
    assert ws == tmp_path / "h" / "sessions" / "0007" and ws.is_dir()
    assert paths.log_dir(tmp_path / "other").is_dir()


def test_projects_and_sessions(store: Store) -> None:
    sid = new_session(store)
    project = store.get_project("dance")
    assert store.get_project(project["id"]) == project == store.get_project(str(project["id"]))
    assert project["framing"] == "half-body" and project["archived"] == 0
    with pytest.raises(StoreError, match="already exists"):
        store.create_project("dance", image="x", pose="x", hand="x", prompt="x")
    with pytest.raises(StoreError, match="framing"):
        store.create_project("odd", image="x", pose="x", hand="x", prompt="x", framing="wide")

    s = store.get_session(sid)
    assert s["settings"] == {"frames": 81, "pad": True}
    assert (s["share_steps"], s["share_blocks"], s["gpus"]) == ("0 2", "34 40", "0,1")
    assert (s["state"], s["desired"], s["project_name"]) == ("created", "run", "dance")
    store.init_chunks(sid, plan(5))
    other = new_session(store, "walk")
    rows = store.list_sessions()
    assert [r["id"] for r in rows] == [sid, other]
    assert (rows[0]["chunks_done"], rows[0]["chunks_total"]) == (0, 5)
    assert rows[0]["project_name"] == "dance" and rows[0]["updated_at"] >= rows[0]["created_at"]
    assert [r["id"] for r in store.list_sessions(project_id="walk")] == [other]

    store.set_session_state(sid, "failed", error="boom")
    assert store.get_session(sid)["error"] == "boom"
    with pytest.raises(StoreError, match="session state"):
        store.set_session_state(sid, "sleeping")
    store.archive_session(sid)
    assert [r["id"] for r in store.list_sessions()] == [other]
    assert len(store.list_sessions(include_archived=True)) == 2
    store.archive_project("walk")
    assert store.list_sessions() == [] and [p["name"] for p in store.list_projects()] == ["dance"]

    store.delete_project("walk")
    store.delete_session(sid)
    assert store.list_sessions(include_archived=True) == []


def test_unknown_project_and_session(store: Store) -> None:
    with pytest.raises(StoreError, match=r"unknown project 'nope'.*posegen init"):
        store.get_project("nope")
    with pytest.raises(StoreError, match=r"unknown session 99; `posegen status`"):
        store.get_session(99)
    with pytest.raises(StoreError, match="unknown project"):
        store.create_session(5, settings={}, seed=0, steps=1, cfg=1.0, share_steps="0",
                             share_blocks="0", anchor=0, budget=None, ckpt="c", device="cpu",
                             gpus="cpu", workspace=None)


def test_claim_order_follows_dependencies(store: Store) -> None:
    sid = new_session(store)
    assert store.init_chunks(sid, plan(5)) is True
    assert store.init_chunks(sid, plan(9)) is False  # idempotent: the first plan stays
    assert [c["deps"] for c in store.chunks(sid)] == [[], [0, 2], [0], [2, 4], [0]]
    assert statuses(store, sid) == ["ready", "pending", "pending", "pending", "pending"]
    w1, w2 = worker(store, sid), worker(store, sid)

    first = store.claim_chunk(sid, w1)
    assert first["idx"] == 0 and first["status"] == "running" and first["attempts"] == 1
    assert store.workers(sid)[0]["chunk_idx"] == 0
    assert store.claim_chunk(sid, w2) is None  # everything waits for the anchor
    assert store.finish_chunk(sid, 0, worker_id=w1)
    assert store.workers(sid)[0]["chunk_idx"] is None
    assert statuses(store, sid) == ["done", "pending", "ready", "pending", "ready"]

    assert store.claim_chunk(sid, w1)["idx"] == 2  # bases before conds
    assert store.claim_chunk(sid, w2)["idx"] == 4
    assert store.claim_chunk(sid, w1) is None  # cond 1 needs 2, cond 3 needs 4
    assert store.chunk_progress(sid, 2, step=2, steps=4, seconds_per_step=1.5, eta_seconds=3)
    assert store.finish_chunk(sid, 2, peak_vram_torch=123, budget="4e9")
    assert store.claim_chunk(sid, w1)["idx"] == 1
    assert store.claim_chunk(sid, w1) is None  # cond 3 still waits for base 4
    store.finish_chunk(sid, 4)
    assert store.claim_chunk(sid, w2)["idx"] == 3
    store.finish_chunk(sid, 1)
    assert not store.all_done(sid)
    store.finish_chunk(sid, 3)
    assert store.all_done(sid)
    c2 = store.chunks(sid)[2]
    assert (c2["step"], c2["seconds_per_step"], c2["peak_vram_torch"], c2["budget"]) == (
        4, 1.5, 123, "4e9")
    assert c2["seconds"] >= 0 and c2["finished_at"] >= c2["started_at"]
    assert store.list_sessions()[0]["chunks_done"] == 5
    assert store.finish_chunk(sid, 3) is False  # already done
    with pytest.raises(StoreError, match=r"out of range.*0\.\.4"):
        store.chunk_progress(sid, 7, step=1, steps=4)


def test_no_claims_while_paused(store: Store) -> None:
    sid = new_session(store)
    store.init_chunks(sid, plan(3))
    w = worker(store, sid)
    store.request(sid, "pause")
    assert store.claim_chunk(sid, w) is None
    store.request(sid, "run")
    assert store.claim_chunk(sid, w)["idx"] == 0


def test_concurrent_claims_never_collide(db: Path) -> None:
    with Store(db) as setup:
        sid = new_session(setup)
        setup.init_chunks(sid, plan(41))
    claimed: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def run(name: int) -> None:
        try:
            with Store(db) as s:  # one Store per thread
                wid = worker(s, sid)
                mine = claimed.setdefault(name, [])
                while not s.all_done(sid):
                    row = s.claim_chunk(sid, wid)
                    if row is None:
                        time.sleep(0.001)
                        continue
                    mine.append(row["idx"])
                    assert s.finish_chunk(sid, row["idx"], worker_id=wid)
        except BaseException as e:  # surfaced by the main thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    a, b = claimed[0], claimed[1]
    assert not set(a) & set(b)
    assert sorted(a + b) == list(range(41))
    with Store(db) as s:
        assert all(c["attempts"] == 1 for c in s.chunks(sid))


def test_retry_marks_dependents_stale(store: Store) -> None:
    sid = new_session(store)
    store.init_chunks(sid, plan(5))
    w = worker(store, sid)
    while (row := store.claim_chunk(sid, w)) is not None:
        store.finish_chunk(sid, row["idx"])

    assert store.retry_chunk(sid, 2, seed=7) == [2, 1, 3]
    assert statuses(store, sid) == ["done", "stale", "ready", "stale", "done"]
    c2 = store.chunks(sid)[2]
    assert (c2["step"], c2["seed"], c2["error"]) == (0, 7, None)

    assert store.retry_chunk(sid, 0) == [0, 4]  # 1..3 are not done: already waiting
    assert statuses(store, sid) == ["ready", "stale", "pending", "stale", "stale"]
    assert [c["step"] for c in store.chunks(sid)] == [0] * 5
    assert store.claim_chunk(sid, w)["idx"] == 0
    assert store.claim_chunk(sid, w) is None  # stale chunks wait for their deps again

    with pytest.raises(StoreError, match=r"chunk 9 out of range: session \d+ has chunks 0\.\.4"):
        store.retry_chunk(sid, 9)
    with pytest.raises(StoreError, match="while it is running"):
        store.retry_chunk(sid, 0)
    store.finish_chunk(sid, 0)
    assert store.claim_chunk(sid, w)["idx"] == 2
    with pytest.raises(StoreError, match="dependent chunk 2 is running"):
        store.retry_chunk(sid, 0)
    assert store.retry_chunk(sid, 4) == [4]  # 4's dependent 3 is stale, not done


def test_retry_everything_after_anchor(store: Store) -> None:
    sid = new_session(store)
    store.init_chunks(sid, plan(7))
    w = worker(store, sid)
    while (row := store.claim_chunk(sid, w)) is not None:
        store.finish_chunk(sid, row["idx"])
    assert store.retry_chunk(sid, 0) == [0, 1, 2, 3, 4, 5, 6]
    assert statuses(store, sid) == ["ready"] + ["stale"] * 6


def test_release_keeps_step(store: Store) -> None:
    sid = new_session(store)
    store.init_chunks(sid, plan(3))
    w = worker(store, sid)
    store.claim_chunk(sid, w)
    store.chunk_progress(sid, 0, step=3, steps=4, worker_id=w)
    assert store.release_chunk(sid, 0, worker_id=w)
    c0 = store.chunks(sid)[0]
    assert (c0["status"], c0["step"], c0["worker_id"]) == ("ready", 3, None)
    assert store.chunk_progress(sid, 0, step=4, steps=4) is False  # no longer running
    again = store.claim_chunk(sid, w)
    # taken up again after a pause: the same attempt (issue #15)
    assert (again["idx"], again["step"], again["attempts"]) == (0, 3, 1)
    assert store.fail_chunk(sid, 0, "CUDA out of memory", worker_id=w)
    assert store.claim_chunk(sid, w) is None
    assert store.release_chunk(sid, 0)  # resume after a failure
    assert store.chunks(sid)[0]["status"] == "ready"


def test_reclaim_dead_workers(store: Store) -> None:
    sid = new_session(store)
    store.init_chunks(sid, plan(5))
    old = worker(store, sid)
    store.claim_chunk(sid, old)
    store.chunk_progress(sid, 0, step=3, steps=4)
    store.finish_chunk(sid, 0)
    assert store.claim_chunk(sid, old)["idx"] == 2
    store.chunk_progress(sid, 2, step=3, steps=4)

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    gone = worker(store, sid, pid=proc.pid)
    assert store.claim_chunk(sid, gone)["idx"] == 4
    store.chunk_progress(sid, 4, step=1, steps=4)
    remote = worker(store, sid, pid=proc.pid, host="elsewhere")  # pid is not checked there

    assert store.reclaim_dead_workers(sid, timeout_s=30) == [4]  # its pid is gone
    assert [w["id"] for w in store.workers(sid, live_only=True)] == [old, remote]

    assert store.reclaim_dead_workers(sid, timeout_s=30, now=time.time() + 120) == [2]
    c2 = store.chunks(sid)[2]
    assert (c2["status"], c2["step"], c2["worker_id"]) == ("ready", 3, None)
    assert "lost" in c2["error"]
    w = {r["id"]: r for r in store.workers(sid)}
    assert w[old]["end_reason"] == w[gone]["end_reason"] == w[remote]["end_reason"] == "lost"
    assert not any(r["alive"] for r in w.values())
    assert store.heartbeat(old) is False  # the lost worker learns it was replaced
    assert [e["kind"] for e in store.events(sid)].count("worker_lost") == 3

    fresh = worker(store, sid)
    assert store.heartbeat(fresh, torch_allocated=5, nvml_used=7)
    row = store.claim_chunk(sid, fresh)
    assert (row["idx"], row["step"], row["attempts"]) == (2, 3, 2)
    with pytest.raises(StoreError, match="marked ended"):
        store.claim_chunk(sid, old)


def test_request_pause_and_stop(store: Store) -> None:
    sid = new_session(store)
    assert store.request(sid, "pause")["state"] == "paused"  # no workers: at once
    assert store.get_session(sid)["desired"] == "pause"
    store.request(sid, "run")
    store.set_session_state(sid, "running")
    w = worker(store, sid)
    s = store.request(sid, "pause")
    assert (s["state"], s["desired"]) == ("pausing", "pause")
    assert store.request(sid, "run")["state"] == "running"  # changed our mind
    assert store.request(sid, "stop")["state"] == "stopping"
    with pytest.raises(StoreError, match="running workers"):
        store.delete_session(sid)
    with pytest.raises(StoreError, match="running workers"):
        store.delete_project("dance")
    assert store.end_worker(w, "stopped") == []
    assert store.get_session(sid)["state"] == "stopped"  # the last worker out settles it
    with pytest.raises(StoreError, match="nothing to pause"):
        store.request(sid, "pause")
    with pytest.raises(StoreError, match="request"):
        store.request(sid, "nap")
    store.delete_session(sid)


def test_end_worker_requeues_its_chunk(store: Store) -> None:
    sid = new_session(store)
    store.init_chunks(sid, plan(3))
    w = worker(store, sid)
    store.claim_chunk(sid, w)
    store.chunk_progress(sid, 0, step=2, steps=4)
    assert store.end_worker(w, "error") == [0]
    c0 = store.chunks(sid)[0]
    assert (c0["status"], c0["step"]) == ("ready", 2)


def test_events(store: Store) -> None:
    sid = new_session(store)
    first = store.add_event(sid, "start", "go")
    store.add_event(sid, "chunk_done", "chunk 0", chunk_idx=0, worker_id=3)
    assert [e["message"] for e in store.events(sid)] == ["go", "chunk 0"]
    tail = store.events(sid, after_id=first)
    assert [(e["kind"], e["chunk_idx"], e["worker_id"]) for e in tail] == [("chunk_done", 0, 3)]
    assert len(store.events(sid, limit=1)) == 1


def test_migration_from_v1_keeps_rows(db: Path) -> None:
    old = Database(db)
    assert schema.migrate(old, target=1) == 0
    assert schema.user_version(old) == 1
    old["projects"].insert({"name": "legacy", "image": "i", "pose": "p", "hand": "h",
                            "prompt": "x", "created_at": 1.0})
    old["sessions"].insert({"project_id": 1, "settings_json": '{"steps": 4}', "seed": 1,
                            "state": "paused", "desired": "pause", "created_at": 1.0,
                            "updated_at": 2.0})
    old["chunks"].insert({"session_id": 1, "idx": 0, "role": "anchor", "deps_json": "[]",
                          "status": "done", "step": 4, "steps": 4})
    old["events"].insert({"session_id": 1, "t": 1.5, "kind": "start", "message": "old"})
    assert "attempts" not in old["chunks"].columns_dict
    old.close()

    with Store(db) as s:
        assert schema.user_version(s.db) == schema.CURRENT_VERSION
        project = s.get_project("legacy")
        assert (project["framing"], project["archived"]) == (None, 0)
        session = s.get_session(1)
        assert (session["state"], session["settings"], session["name"]) == (
            "paused", {"steps": 4}, None)
        # v5: an old session is a full one, from no preview, with no callback
        assert (session["kind"], session["from_preview"], session["on_done"],
                session["on_done_claimed_at"]) == ("full", None, None, None)
        chunk = s.chunks(1)[0]
        assert (chunk["status"], chunk["attempts"], chunk["seed"]) == ("done", 0, None)
        assert [e["message"] for e in s.events(1)] == ["old"]
        assert {"workers", "counters", "gpu_samples"} <= set(s.db.table_names())
        assert "commands" not in s.db.table_names()  # v4: written, never read: gone
        assert s.register_worker(1, pid=1, host="h", device="cpu") == 1
        assert new_session(s, "legacy") == 2  # ids continue after the migrated ones
    with Store(db) as s:  # opening again migrates nothing
        assert schema.user_version(s.db) == schema.CURRENT_VERSION


def test_corrupt_file_is_named(db: Path) -> None:
    db.write_bytes(os.urandom(8192))
    with pytest.raises(StoreError, match="not a posegen database") as err:
        Store(db)
    assert str(db) in str(err.value) and "posegen init" in str(err.value)


def test_foreign_sqlite_file_is_refused(db: Path) -> None:
    Database(db)["recipes"].insert({"name": "soup"})
    with pytest.raises(StoreError, match="not a posegen one"):
        Store(db)


def test_read_only_database(db: Path) -> None:
    with Store(db) as s:
        sid = new_session(s)
    if os.geteuid() == 0:
        # root ignores file modes: use a read-only connection to get the same refusal
        store = Store(db, readonly=True)
    else:
        db.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        db.parent.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.geteuid() != 0:
            try:
                store = Store(db)
            except StoreError as e:  # refused at open: also fine, if it names the file
                assert str(db) in str(e)
                return
        assert store.get_session(sid)["project_name"] == "dance"  # reading still works
        with pytest.raises(StoreError) as err:
            store.add_event(sid, "start")
        assert str(db) in str(err.value)
        assert "read-only" in str(err.value) or "permission" in str(err.value)
        store.close()
    finally:
        db.parent.chmod(0o755)
        db.chmod(0o644)


def test_read_only_open_of_missing_file(db: Path) -> None:
    with pytest.raises(StoreError, match="posegen init"):
        Store(db, readonly=True)


def test_newer_schema_is_refused(db: Path) -> None:
    Store(db).close()
    Database(db).execute(f"PRAGMA user_version = {schema.CURRENT_VERSION + 1}")
    for readonly in (False, True):
        with pytest.raises(StoreError, match="upgrade posegen-tui") as err:
            Store(db, readonly=readonly)
        assert str(db) in str(err.value)


def test_gpu_samples_compact_a_week(store: Store) -> None:
    now = 1_800_000_000.0
    start = now - 7 * 86400
    n = 7 * 86400 // 2
    store.add_gpu_samples(
        {"host": "gpu1", "device_index": 0, "t": start + 2 * i, "used": 1000 + i % 30,
         "total": 80_000, "util": float(i % 30), "temp": 60.0, "worker_id": 1}
        for i in range(n))
    store.add_gpu_sample(host="gpu1", device_index=1, used=5, total=10, t=now - 10)
    removed = store.compact_gpu_samples(now=now)
    rows = store.gpu_samples(host="gpu1", device_index=0)
    assert removed == n + 1 - len(store.gpu_samples())
    by_res = Counter(r["resolution"] for r in rows)
    # raw for the last hour (1 per 2 s), 1-minute means to a day, 10-minute means beyond
    assert by_res[0.0] == 1800 and by_res[60.0] == 23 * 60 and by_res[600.0] == 6 * 144
    assert len(rows) < 4100  # from 302,400
    minute = next(r for r in rows if r["resolution"] == 60.0)
    assert minute["util"] == pytest.approx(14.5) and minute["used"] in (1014, 1015)
    assert minute["worker_id"] == 1 and minute["t"] % 60 == 0
    assert all(r["t"] >= now - 3600 for r in rows if r["resolution"] == 0.0)
    assert all(r["t"] < now - 86400 + 600 for r in rows if r["resolution"] == 600.0)
    assert store.compact_gpu_samples(now=now) == 0  # whole buckets only: nothing left to do
    assert len(store.gpu_samples(since=now - 60)) == 31


def test_busy_writer_gives_a_clear_error(db: Path) -> None:
    holder = Store(db)
    sid = new_session(holder)
    waiter = Store(db, busy_timeout_ms=200)
    with holder._tx():  # a writer that keeps the lock too long
        assert waiter.get_session(sid)["id"] == sid  # WAL: readers are not blocked
        t0 = time.monotonic()
        with pytest.raises(StoreError, match="busy") as err:
            waiter.add_event(sid, "start")
        assert time.monotonic() - t0 >= 0.15 and str(db) in str(err.value)
    waiter.add_event(sid, "start")  # fine once the lock is free
    holder.close()
    waiter.close()


def test_status_names_what_a_running_chunk_is_doing(store: Store,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Between steps (loading models, encoding, decoding) the chunk's newest phase event
    says what happens; phases of an earlier attempt or of finished chunks do not show."""
    from sessions.control import snapshot

    clock = [1_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    sid = new_session(store)
    store.init_chunks(sid, plan(3))
    wid = worker(store, sid)
    store.add_event(sid, "phase", "chunk 0 (anchor): loading", chunk_idx=0)  # a past attempt
    clock[0] += 1
    assert store.claim_chunk(sid, wid)["idx"] == 0
    assert snapshot(store, sid)["chunks"][0]["phase"] is None  # only a stale phase so far
    for name in ("loading", "encoding"):
        clock[0] += 5
        store.add_event(sid, "phase", f"chunk 0 (anchor): {name}", chunk_idx=0, worker_id=wid)
    clock[0] += 7
    chunk = snapshot(store, sid)["chunks"][0]
    assert (chunk["phase"], chunk["phase_seconds"]) == ("encoding", 7.0)
    assert snapshot(store, sid)["chunks"][1]["phase"] is None  # not running
    store.finish_chunk(sid, 0, seconds=1.0, seconds_per_step=0.1, peak_vram_torch=None,
                       peak_vram_nvml=None, budget="4e9", worker_id=wid)
    assert snapshot(store, sid)["chunks"][0]["phase"] is None  # done: nothing happening


def test_compiling_and_notices_reach_the_sessions_events(store: Store) -> None:
    """The engine's compiled event (how long compiling took) and notices (a chunk that
    starts over) are the session's events, named by chunk, as phases are."""
    from engine.progress import ProgressEvent
    from sessions.records import WorkerRecord

    sid = new_session(store)
    store.init_chunks(sid, plan(1))
    rec = WorkerRecord(store, sid, "cuda:0")
    rec.register(pid=os.getpid(), host=HOST)
    rec.progress(ProgressEvent(kind="phase", chunk=0, role="anchor", message="compiling"))
    rec.progress(ProgressEvent(kind="compiled", chunk=0, role="anchor",
                               message="DiT blocks compiled in 14.2 s; on (--compile auto)"))
    rec.progress(ProgressEvent(kind="notice", chunk=0, role="anchor",
                               message="its saved steps ran eager; the chunk starts over"))
    got = [(e["kind"], e["message"], e["chunk_idx"]) for e in store.events(sid)
           if e["kind"] in ("phase", "compiled", "notice")]
    assert got == [("phase", "chunk 0 (anchor): compiling", 0),
                   ("compiled", "chunk 0 (anchor): DiT blocks compiled in 14.2 s; on "
                                "(--compile auto)", 0),
                   ("notice", "chunk 0 (anchor): its saved steps ran eager; the chunk starts "
                              "over", 0)]


def test_a_worker_that_lost_its_chunk_never_touches_the_new_owners_claim(store: Store) -> None:
    """Issue #14, defect 1: worker A is stopped (SIGSTOP) past its heartbeat timeout, A is
    declared lost and its chunk goes to worker B; when A wakes up, its step report, its
    pause and its failure must leave B's claim alone and the session running."""
    from engine.progress import ProgressEvent
    from sessions.records import WorkerRecord

    sid = new_session(store)
    store.init_chunks(sid, plan(1))
    store.request(sid, "run")
    store.set_session_state(sid, "running")
    a = WorkerRecord(store, sid, "cuda:0")
    a.register(pid=os.getpid(), host=HOST)
    assert a.claim(None)["idx"] == 0
    store.chunk_progress(sid, 0, step=1, steps=4, worker_id=a.worker_id)
    assert store.reclaim_dead_workers(sid, timeout_s=5, now=time.time() + 60) == [0]
    b = worker(store, sid)
    assert store.claim_chunk(sid, b)["idx"] == 0

    a.progress(ProgressEvent(kind="step", chunk=0, role="anchor", step=2, steps=4))
    a.paused(0)
    a.fail(0, "RuntimeError: woke up confused")
    chunk = store.chunks(sid)[0]
    assert (chunk["status"], chunk["worker_id"], chunk["step"]) == ("running", b, 1)
    assert store.get_session(sid)["state"] == "running"
    assert a.lost_claim  # the worker loop stops at the next step boundary and exits
    assert store.chunk_progress(sid, 0, step=2, steps=4, worker_id=b)
    assert store.release_chunk(sid, 0, worker_id=b)  # the owner still can


def test_session_ids_never_repeat_after_a_delete(store: Store) -> None:
    """Issue #14, defect 3: a session's workspace folder is named by its id."""
    first, second = new_session(store), new_session(store)
    store.delete_session(second)
    third = new_session(store)
    assert (first, second, third) == (1, 2, 3)
    store.delete_session(third)
    store.delete_session(first)
    assert new_session(store) == 4


def test_a_leftover_workspace_folder_is_moved_aside_not_inherited(tmp_path: Path) -> None:
    home = tmp_path / "home"
    old = paths.workspace_dir(3, home)
    (old / "chunks").mkdir()
    (old / "chunks" / "frames.npy").write_bytes(b"old frames")
    fresh, aside = paths.fresh_workspace(3, home)
    assert fresh == old and list(fresh.iterdir()) == []
    assert aside is not None and (aside / "chunks" / "frames.npy").read_bytes() == b"old frames"
    assert paths.fresh_workspace(3, home) == (fresh, None)  # empty: nothing to move


def test_home_database_and_logs_are_private(tmp_path: Path) -> None:
    """Issue #14, defect 8: on a shared GPU server other users must not read prompts,
    frames or logs: the home folder is created 0700 and the database 0600."""
    home = tmp_path / "new-home"
    db = paths.db_path(home)
    with Store(db):
        pass
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    log = paths.log_dir(home) / "w.log"
    from sessions.control import _detached

    pid = _detached([sys.executable, "-c", "print('hi')"], log, dict(os.environ), reap=False)
    end = time.monotonic() + 60
    while "hi" not in (log.read_text() if log.exists() else "") and time.monotonic() < end:
        time.sleep(0.05)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def test_a_zero_byte_database_is_refused_not_silently_replaced(tmp_path: Path) -> None:
    """Issue #14, defect 7: an empty file (a full disk, a cut copy) opened as a fresh
    store would lose every project and session without a word."""
    db = tmp_path / "posegen.db"
    db.write_bytes(b"")
    with pytest.raises(StoreError) as err:
        Store(db)
    assert "0 bytes" in str(err.value) and f"mv {db}" in str(err.value)
    assert db.stat().st_size == 0  # left as it was
    db.unlink()
    with Store(db) as s:  # a missing file is a new store, as always
        assert s.list_projects() == []


def test_concurrent_first_opens_all_succeed(tmp_path: Path) -> None:
    """The creation lock: a 0-byte file is never one another process is creating."""
    db = tmp_path / "fresh.db"
    code = ("import sys; from sessions.store import Store\n"
            "with Store(sys.argv[1]) as s: s.list_projects()\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(db)],
                              cwd=Path(__file__).resolve().parents[1],
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err


def test_a_full_disk_is_named_with_what_to_free(db: Path) -> None:
    import sqlite3

    with Store(db) as s:
        err = s._error(sqlite3.OperationalError("database or disk is full"))
    assert "disk holding" in str(err) and "--clear" in str(err) and str(db) in str(err)


def test_an_io_error_syncing_a_folder_is_reported(tmp_path: Path, monkeypatch) -> None:
    import errno

    from engine import atomic

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(atomic.os, "fsync", failing)
    with pytest.raises(OSError, match="dmesg"):
        atomic._fsync_dir(tmp_path)
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (_ for _ in ()).throw(
        OSError(errno.EINVAL, "Invalid argument")))
    atomic._fsync_dir(tmp_path)  # a folder this filesystem cannot sync: not an error


def test_session_states_move_only_along_the_table(store: Store) -> None:
    """Issue #14: one transition table, checked on every write of a session's state."""
    from sessions.states import MOVES, STATES

    sid = new_session(store)
    assert store.get_session(sid)["state"] == "created"
    for state in ("running", "merging", "done"):
        store.set_session_state(sid, state)
    for late in ("running", "failed", "paused", "created"):  # a stale writer after the end
        with pytest.raises(StoreError, match=f"session {sid} is done: it cannot become {late}"):
            store.set_session_state(sid, late)
    with pytest.raises(StoreError, match="nothing to pause"):
        store.request(sid, "pause")
    store.set_session_state(sid, "stopped")  # `posegen retry` reopens a done session
    store.set_session_state(sid, "running")
    assert store.get_session(sid)["state"] == "running"
    assert set(MOVES) == set(STATES) and all(m <= set(STATES) for m in MOVES.values())
    assert not any("created" in m for m in MOVES.values())  # only `session new` makes it


def test_chunk_statuses_move_only_along_the_table(store: Store,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue #14: chunk writes name their move; the store checks it against one table."""
    from sessions import states

    sid = new_session(store)
    store.init_chunks(sid, plan(3))
    w = store.register_worker(sid, pid=1, host="h", device="cpu")
    idx = store.claim_chunk(sid, w)["idx"]
    assert store.finish_chunk(sid, idx, worker_id=w)
    # The table, not the SQL, decides: take a move away and the same write is refused.
    narrowed = dict(states.CHUNK_MOVES, done=frozenset({"stale"}))
    monkeypatch.setattr(states, "CHUNK_MOVES", narrowed)
    with pytest.raises(StoreError, match=f"chunk {idx} of session {sid} is done: it cannot "
                                         "become ready"):
        store.retry_chunk(sid, idx)
    assert store.chunks(sid)[idx]["status"] == "done"  # refused writes change nothing
    monkeypatch.undo()
    assert store.retry_chunk(sid, idx)[0] == idx
    with pytest.raises(states.IllegalMove, match="cannot become running"):
        states.check_chunk_move(sid, 0, "done", "running")  # done is never claimed again
    moves = states.CHUNK_MOVES
    assert set(moves) == set(states.CHUNK_STATES)
    assert all(m <= set(states.CHUNK_STATES) for m in moves.values())
    # What `_refresh_ready` and `_end` do in SQL without naming a move must stay allowed.
    assert "ready" in moves["pending"] and "pending" in moves["ready"]
    assert "ready" in moves["running"]


def test_one_worker_timeout_for_every_liveness_check() -> None:
    """Issue #14: the store's and the workers' liveness checks read the same setting."""
    code = ("import sessions.store as s, sessions.records as r, sessions.control as c\n"
            "print(s.WORKER_TIMEOUT_S, r.WORKER_TIMEOUT_S, c.WORKER_TIMEOUT_S,\n"
            "      s.Store.workers.__defaults__[-1])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1],
                          env=dict(os.environ, POSEGEN_WORKER_TIMEOUT_S="4"))
    assert proc.stdout.split() == ["4.0"] * 4, proc.stderr


def test_one_table_of_framings() -> None:
    from engine.settings import FRAMINGS
    from posegen_tui.data.forms import FRAMINGS as FORM_FRAMINGS
    from sessions.cli import build_parser

    assert {k: (" ".join(map(str, s)), " ".join(map(str, b)))
            for k, (s, b) in FRAMINGS.items()} == FORM_FRAMINGS
    init = next(a for a in build_parser()._subparsers._group_actions[0].choices["init"]._actions
                if a.dest == "framing")
    assert sorted(init.choices) == sorted(FRAMINGS)


def test_stop_and_pause_say_what_happened_in_one_wording(store: Store, tmp_path: Path) -> None:
    """Issue #15: `x` on a done session said its workers would stop; the CLI and the app
    share these words (sessions.control)."""
    from posegen_tui.data import actions
    from sessions.control import request_stop

    sid = new_session(store)
    store.request(sid, "run")
    for state in ("running", "merging", "done"):
        store.set_session_state(sid, state)
    assert request_stop(store, sid, "stop") == f"session {sid} is done: nothing to stop"
    assert store.get_session(sid)["state"] == "done"
    other = new_session(store)
    assert request_stop(store, other, "pause") == \
        f"session {other}: paused (no worker was running)"
    home = tmp_path / "home"
    with Store(paths.db_path(home)) as s2:
        third = new_session(s2)
    assert actions.stop_now(home, third) == (
        f"session {third}: stopped at once (0 process(es) killed); finished chunks are kept; "
        f"continue with `posegen resume {third}`")


def test_a_pause_is_not_an_attempt_a_failure_or_a_lost_worker_is(store: Store) -> None:
    """Issue #15: pausing and resuming counted as another attempt."""
    sid = new_session(store)
    store.init_chunks(sid, plan(1))
    store.request(sid, "run")
    w = worker(store, sid)

    def attempts() -> int:
        return store.chunks(sid)[0]["attempts"]

    assert store.claim_chunk(sid, w)["idx"] == 0 and attempts() == 1
    store.chunk_progress(sid, 0, step=2, steps=4, worker_id=w)
    assert store.release_chunk(sid, 0, worker_id=w)  # a pause
    store.claim_chunk(sid, w)
    assert attempts() == 1
    store.fail_chunk(sid, 0, "RuntimeError: x", worker_id=w)
    store.release_chunk(sid, 0)  # resume requeues the failure
    store.claim_chunk(sid, w)
    assert attempts() == 2
    store.reclaim_dead_workers(sid, timeout_s=5, now=time.time() + 60)  # lost
    store.claim_chunk(sid, worker(store, sid))
    assert attempts() == 3
