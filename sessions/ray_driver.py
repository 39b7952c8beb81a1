"""The Ray executor's driver: one process on the database host runs a session on a cluster.

Started by `posegen start SESSION --executor ray` in its own process session
(like the local workers, it outlives the SSH connection). It connects to a Ray
cluster, creates one `ChunkActor` per GPU (``num_gpus=1``; in tests a custom
resource and the CPU), and is the **only writer of the database**: it registers
a workers row per actor, claims chunks for them, records the progress they
report through Ray, heartbeats their rows, merges, and settles the session.

- Pause/stop: the driver watches the session's ``desired`` and tells the actors,
  which stop at the next step boundary; their chunks go back to ready.
- An actor or node lost mid-chunk (``RayActorError``): its row ends as lost,
  the chunk goes back to ready (``reclaimed`` event) and resumes from its last
  saved step on another actor; a replacement actor is started when the cluster
  has room for one.
- The checkpoint, the inputs and the workspace must be on a path every node
  sees: each actor checks a token the driver writes into the workspace before
  it gets work (see docs/cluster.md).

`import ray` happens only in this module and `sessions/ray_actor.py`, at run
time, so posegen works without the ``ray`` extra.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import secrets
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sessions.control import ray_driver_lock
from sessions.executor import drive
from sessions.paths import db_path
from sessions.ray_actor import CHECK_FILE, DOCS, ChunkActor, node_label
from sessions.records import (
    HEARTBEAT_S,
    WorkerRecord,
    describe_error,
    fail_session,
    log,
    mark_running,
    send_heartbeat,
    settle_state,
    store_plan,
)
from sessions.session_job import job_for
from sessions.store import Store, StoreError

INSTALL_HINT = "pip install 'posegen-tui[ray]'"
# run_chunk, poll and set_desired must reach an actor at once: a threaded actor.
ACTOR_CONCURRENCY = 4
HEARTBEAT_KEYS = ("torch_allocated", "torch_peak", "nvml_used", "nvml_total")


class StartFailed(RuntimeError):
    """The session cannot run on this cluster; the message says why and what to do."""


def require_ray():
    try:
        import ray
    except ImportError as e:
        raise StoreError(f"the Ray executor needs Ray, which is not installed here: "
                         f"{INSTALL_HINT}") from e
    return ray


@dataclass
class RayOptions:
    address: str = "auto"
    actors: int | None = None       # None: one per `amount` of `resource` in the cluster
    resource: str = "GPU"
    amount: float = 1.0
    device: str = "cuda:0"          # inside the actor: Ray sets CUDA_VISIBLE_DEVICES
    threads: int = 0                # torch CPU threads per actor (0: Ray's default)
    placement_timeout: float = 120.0
    replacements: int | None = None  # actors started after losses (None: as many as actors)

    def actor_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"max_concurrency": ACTOR_CONCURRENCY, "max_restarts": 0}
        if self.resource == "GPU":
            opts["num_gpus"] = self.amount
        elif self.resource == "CPU":
            opts["num_cpus"] = self.amount
        else:
            opts["resources"] = {self.resource: self.amount}
        return opts


@dataclass
class Slot:
    """One actor as the driver sees it."""

    handle: Any
    n: int
    created: float = field(default_factory=time.monotonic)
    setup_ref: Any = None
    info: dict[str, Any] = field(default_factory=dict)
    record: WorkerRecord | None = None
    chunk: int | None = None
    run_ref: Any = None
    poll_ref: Any = None
    loaded: str | None = None
    last_sample: float = 0.0

    @property
    def where(self) -> str:
        return node_label(self.info.get("host", "?"), self.info.get("ip"))


class Beats(threading.Thread):
    """Heartbeats every live actor's workers row (with its memory numbers) from a thread,
    so the rows stay fresh through a long merge; notes rows someone else ended."""

    def __init__(self, db: Path, session_id: int) -> None:
        super().__init__(daemon=True, name="heartbeats")
        self.db, self.session_id = db, session_id
        self.halt = threading.Event()
        self.lock = threading.Lock()
        self.numbers: dict[int, dict[str, Any]] = {}
        self.ended: set[int] = set()
        self._last_compact = 0.0

    def add(self, worker_id: int) -> None:
        with self.lock:
            self.numbers.setdefault(worker_id, {})

    def update(self, worker_id: int, memory: dict[str, Any]) -> None:
        with self.lock:
            if worker_id in self.numbers:
                self.numbers[worker_id] = {k: memory[k] for k in HEARTBEAT_KEYS if k in memory}

    def drop(self, worker_id: int) -> None:
        with self.lock:
            self.numbers.pop(worker_id, None)

    def run(self) -> None:
        store = Store(self.db)
        while not self.halt.is_set():
            with self.lock:
                todo = dict(self.numbers)
            for wid, numbers in todo.items():
                try:
                    if not send_heartbeat(store, wid, **numbers):
                        with self.lock:
                            self.ended.add(wid)
                            self.numbers.pop(wid, None)
                except Exception as e:  # a missed beat must not stop the driver
                    log(f"heartbeat of worker {wid} failed: {e}")
            if time.time() - self._last_compact > 600:
                try:
                    store.compact_gpu_samples()
                    self._last_compact = time.time()
                except Exception as e:
                    log(f"compacting GPU samples failed: {e}")
            self.halt.wait(HEARTBEAT_S)


class RayDriver:
    def __init__(self, session_id: int, options: RayOptions, home: Path | None = None) -> None:
        self.session_id = session_id
        self.opts = options
        self.home = home
        self.db = db_path(home)
        self.store = Store(self.db)
        self.slots: list[Slot] = []
        self.pending: list[Slot] = []     # created, setup not answered yet
        self.beats = Beats(self.db, session_id)
        self.job: Any = None
        self.ray: Any = None
        self._actor_cls: Any = None
        self._sent_desired: str | None = None
        self._replacements_left = 0
        self._count = 0
        self._lock_file: Any = None

    # -- the whole run ---------------------------------------------------------------
    def run(self) -> int:
        store, sid = self.store, self.session_id
        reason = "error"
        try:
            self._take_lock()
        except StartFailed as e:  # the other driver owns the session: leave it alone
            log(f"error: {e}")
            return 1
        try:
            self.ray = require_ray()
            self._connect()
            session = store.get_session(sid)
            project = store.get_project(session["project_id"])
            self.job = job_for(session, project, self.opts.device, progress=self._on_job)
            plan = self.job.prepare()
            store_plan(store, sid, plan, self.job.settings.steps)
            self.beats.start()
            self._start_actors(session, project)
            mark_running(store, sid)
            reason = drive(store, sid, self.job, self)
        except Exception as e:
            msg = str(e) if isinstance(e, (StartFailed, StoreError)) else describe_error(e, sid)
            log(f"error: {msg}\n{traceback.format_exc()}")
            fail_session(store, sid, msg)
        finally:
            self.beats.halt.set()
            slot_reason = "error" if reason in ("error", "lost") else reason
            for slot in self.slots:
                if slot.record is not None:
                    slot.record.end(slot_reason)
            self._kill(self.slots + self.pending)
            settle_state(store, sid)
            if self.ray is not None and self.ray.is_initialized():
                self.ray.shutdown()
            if self._lock_file is not None:
                self._lock_file.close()  # releases the flock: the session may start again
            log(f"Ray driver of session {sid} exits: {reason}")
        return 0 if reason in ("paused", "stopped", "done") else 1

    def _on_job(self, e: Any) -> None:
        """The driver's own Job only merges."""
        if e.kind == "merge_done":
            self.store.add_event(self.session_id, "merged", e.message)

    def _take_lock(self) -> None:
        path = ray_driver_lock(self.session_id, self.home)
        f = open(path, "a+")  # noqa: SIM115  (held until the process exits)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            raise StartFailed(f"another Ray driver runs session {self.session_id} "
                              f"(lock {path}); see `posegen status {self.session_id}`") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._lock_file = f

    def _connect(self) -> None:
        ray, address = self.ray, self.opts.address
        log(f"connecting to Ray at {address}")
        # A private one-node Ray listens on loopback only, without a dashboard: nothing on
        # the network can submit work to it (docs/cluster.md#security).
        private = dict(_node_ip_address="127.0.0.1", include_dashboard=False)
        try:
            ray.init(address=None if address == "local" else address, namespace="posegen",
                     logging_level="WARNING", log_to_driver=True,
                     **(private if address == "local" else {}))
        except (ConnectionError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise StartFailed(
                f"cannot connect to a Ray cluster at {address} ({first}): start one with "
                f"`ray start --head` on this host, or pass --address HEAD:6379; see {DOCS}"
            ) from e

    # -- actors ----------------------------------------------------------------------
    def _actor_count(self) -> int:
        o = self.opts
        total = float(self.ray.cluster_resources().get(o.resource, 0))
        fits = int(total // o.amount) if o.amount > 0 else 0
        if fits < 1:
            have = ", ".join(f"{k} {v:g}" for k, v in sorted(self.ray.cluster_resources().items())
                             if not k.startswith(("node:", "memory", "object_store")))
            hint = ("start the nodes with their GPUs visible (`ray start ... --num-gpus N`)"
                    if o.resource == "GPU" else f"start a node with --resources "
                    f"'{{\"{o.resource}\": N}}'")
            raise StartFailed(f"the Ray cluster has no {o.resource} to give ({o.amount:g} per "
                              f"actor; it has {have or 'nothing'}): {hint}; see {DOCS}")
        if o.actors is None:
            return fits
        if o.actors > fits:
            raise StartFailed(f"--ray-actors {o.actors} needs {o.actors * o.amount:g} "
                              f"{o.resource} but the Ray cluster has {total:g}; use "
                              f"--ray-actors {fits} or add nodes")
        return o.actors

    def shared_paths(self, session: dict[str, Any], project: dict[str, Any]) -> dict[str, str]:
        """Every path an actor reads besides the workspace, by what it is."""
        return {"checkpoint": session["ckpt"], "reference image": project["image"],
                "pose video": project["pose"], "hand video": project["hand"]}

    def _new_actor(self) -> Slot:
        if self._actor_cls is None:
            self._actor_cls = self.ray.remote(ChunkActor)
        session = self.store.get_session(self.session_id)
        project = self.store.get_project(session["project_id"])
        handle = self._actor_cls.options(**self.opts.actor_options()).remote(
            session, project, self.opts.device, self.opts.threads)
        slot = Slot(handle=handle, n=self._count)
        self._count += 1
        slot.setup_ref = handle.setup.remote(str(self._token_path), self._token,
                                             self.shared_paths(session, project))
        return slot

    def _start_actors(self, session: dict[str, Any], project: dict[str, Any]) -> None:
        ray, sid = self.ray, self.session_id
        n = self._actor_count()
        self._replacements_left = n if self.opts.replacements is None else self.opts.replacements
        self._token = secrets.token_hex(16)
        self._token_path = Path(session["workspace"]) / CHECK_FILE
        self._token_path.write_text(self._token + "\n")
        log(f"starting {n} actor(s) with {self.opts.amount:g} {self.opts.resource} each, "
            f"device {self.opts.device}")
        slots = [self._new_actor() for _ in range(n)]
        refs = [s.setup_ref for s in slots]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=self.opts.placement_timeout)
        problems, placed = [], []
        for slot in slots:
            if slot.setup_ref not in ready:
                continue
            try:
                slot.info = ray.get(slot.setup_ref)
            except Exception as e:
                problems.append(self._setup_error(e))
                continue
            if slot.info["problem"]:
                problems.append(slot.info["problem"])
            else:
                placed.append(slot)
        if problems:
            self.pending = slots
            raise StartFailed("; ".join(dict.fromkeys(problems)))
        missing = [s for s in slots if s not in placed]
        if missing:
            self._kill(missing)
            if not placed:
                self.pending = slots
                raise StartFailed(
                    f"no Ray actor could be placed within {self.opts.placement_timeout:g} s "
                    f"(each needs {self.opts.amount:g} {self.opts.resource}); check `ray "
                    f"status` for free resources; see {DOCS}")
            self.store.add_event(sid, "warning", f"only {len(placed)} of {n} Ray actors "
                                 f"could be placed within {self.opts.placement_timeout:g} s")
        for slot in placed:
            self._register(slot)
        where = ", ".join(f"worker {s.record.worker_id} on {s.where} ({s.info['device']})"
                          for s in self.slots if s.record is not None)
        self.store.add_event(sid, "ray_ready", f"{len(self.slots)} Ray actor(s): {where}")

    def _setup_error(self, e: BaseException) -> str:
        cause = getattr(e, "cause", None) or e
        where = ""
        ip = getattr(e, "ip", None)
        if ip:
            where = f" on node {ip}"
        return f"a Ray actor failed to start{where}: {describe_error(cause, self.session_id)}"

    def _register(self, slot: Slot) -> None:
        info = slot.info
        slot.record = WorkerRecord(self.store, self.session_id, info["device"])
        wid = slot.record.register(pid=int(info["pid"]), host=info["host"],
                                   where=f" on node {slot.where} (Ray actor)")
        self.beats.add(wid)
        self.slots.append(slot)
        if self._sent_desired is not None:
            slot.handle.set_desired.remote(self._sent_desired)
        log(f"worker {wid}: Ray actor pid {info['pid']} on {slot.where}, {info['device']}")

    def _kill(self, slots: list[Slot]) -> None:
        for slot in slots:
            with contextlib.suppress(Exception):  # already dead, or Ray is gone
                self.ray.kill(slot.handle)

    # -- the executor loop's placement (sessions/executor.py) -----------------------
    lost = False  # the driver owns its actors' rows; a lost actor ends only its own row

    def refresh(self, desired: str) -> None:
        self._forget_ended()
        if desired != self._sent_desired:
            for slot in self.slots:
                slot.handle.set_desired.remote(desired)
            self._sent_desired = desired

    def idle(self) -> list[tuple[WorkerRecord, str | None]]:
        return [(s.record, s.loaded) for s in self.slots
                if s.run_ref is None and s.record is not None]

    def launch(self, record: WorkerRecord, row: dict[str, Any]) -> None:
        slot = next(s for s in self.slots if s.record is record)
        slot.chunk = idx = row["idx"]
        slot.run_ref = slot.handle.run_chunk.remote(idx, row["seed"])
        slot.poll_ref = slot.handle.poll.remote()

    def busy(self) -> bool:
        return any(s.run_ref is not None for s in self.slots)

    def check_workers(self) -> None:
        if not self.slots and not self.pending:
            raise StartFailed(
                f"every Ray actor of session {self.session_id} was lost; check the cluster "
                f"with `ray status`, then `posegen resume {self.session_id}`")

    def _forget_ended(self) -> None:
        """Rows ended by someone else (e.g. declared lost): that actor stops now."""
        with self.beats.lock:
            ended, self.beats.ended = self.beats.ended, set()
        for slot, record in [(s, s.record) for s in self.slots
                             if s.record and s.record.worker_id in ended]:
            log(f"worker {record.worker_id} was ended by another process; its actor stops")
            self._kill([slot])
            self.slots.remove(slot)

    def wait(self) -> None:
        self._wait()

    def _wait(self) -> None:
        ray = self.ray
        refs = {}
        for slot in self.slots:
            if slot.run_ref is not None:
                refs[slot.run_ref] = ("run", slot)
            if slot.poll_ref is not None:
                refs[slot.poll_ref] = ("poll", slot)
        for slot in self.pending:
            refs[slot.setup_ref] = ("setup", slot)
        if not refs:
            time.sleep(0.5)
            return
        ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
        if ready:
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)
        # Polls first: a chunk's progress is recorded before its result.
        for kind in ("poll", "run", "setup"):
            for ref in ready:
                what, slot = refs[ref]
                if what == kind and (slot in self.slots or slot in self.pending):
                    getattr(self, f"_on_{what}")(slot)
        self._drop_stuck_pending()

    def _on_poll(self, slot: Slot) -> None:
        ref, slot.poll_ref = slot.poll_ref, None
        try:
            self._apply_poll(slot, self.ray.get(ref))
        except Exception as e:
            self._on_failure(slot, e)
            return
        if slot.run_ref is not None:
            slot.poll_ref = slot.handle.poll.remote()

    def _apply_poll(self, slot: Slot, answer: dict[str, Any]) -> None:
        record = slot.record
        assert record is not None
        for event in answer["events"]:
            record.progress(event)
        memory = answer.get("memory") or {}
        self.beats.update(record.worker_id, memory)
        sample = memory.get("sample")
        if sample and time.monotonic() - slot.last_sample >= HEARTBEAT_S:
            slot.last_sample = time.monotonic()
            self.store.add_gpu_sample(host=slot.info["host"], worker_id=record.worker_id,
                                      **sample)

    def _on_run(self, slot: Slot) -> None:
        ray, record = self.ray, slot.record
        assert record is not None
        idx, ref = slot.chunk, slot.run_ref
        try:
            result = ray.get(ref)
            # What the actor reported before returning: its last steps, chunk_start.
            if slot.poll_ref is not None:
                self._apply_poll(slot, ray.get(slot.poll_ref))
            self._apply_poll(slot, ray.get(slot.handle.poll.remote(0)))
        except Exception as e:
            self._on_failure(slot, e)
            return
        slot.run_ref = slot.poll_ref = None
        slot.chunk = None
        assert idx is not None
        if result is None:
            record.paused(idx)
            slot.loaded = None
            return
        slot.loaded = result.get("loaded")
        record.finish(idx, result["done"], nvml_peak=result.get("nvml_peak"))

    def _on_failure(self, slot: Slot, e: BaseException) -> None:
        """An actor died (lost: its chunk resumes elsewhere) or its chunk raised (failed)."""
        ray_exc = self.ray.exceptions
        record = slot.record
        assert record is not None
        idx = slot.chunk
        self._kill([slot])
        if slot in self.slots:
            self.slots.remove(slot)
        self.beats.drop(record.worker_id)
        if isinstance(e, ray_exc.RayTaskError):
            msg = describe_error(getattr(e, "cause", None) or e, self.session_id)
            log(f"worker {record.worker_id} (chunk {idx}) failed: {msg}\n{e}")
            record.fail(idx, msg)
            record.end("error")
            return
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        log(f"worker {record.worker_id}: Ray actor on {slot.where} lost ({type(e).__name__}: "
            f"{why})")
        for held in record.end("lost"):
            self.store.add_event(
                self.session_id, "reclaimed",
                f"chunk {held} taken back from lost Ray actor (worker {record.worker_id} on "
                f"{slot.where}); it resumes from its last saved step",
                chunk_idx=held, worker_id=record.worker_id)
        self._replace()

    def _replace(self) -> None:
        if self._replacements_left <= 0:
            return
        self._replacements_left -= 1
        slot = self._new_actor()
        self.pending.append(slot)
        # A "start" event: status waits for a starting worker before saying "interrupted".
        self.store.add_event(self.session_id, "start", "the Ray driver asked for a "
                             "replacement actor")
        log(f"starting a replacement actor ({self._replacements_left} more allowed)")

    def _on_setup(self, slot: Slot) -> None:
        self.pending.remove(slot)
        try:
            slot.info = self.ray.get(slot.setup_ref)
        except Exception as e:
            msg = self._setup_error(e)
            self.store.add_event(self.session_id, "warning", f"replacement actor: {msg}")
            self._kill([slot])
            return
        if slot.info["problem"]:
            self.store.add_event(self.session_id, "warning",
                                 f"replacement actor not used: {slot.info['problem']}")
            self._kill([slot])
            return
        self._register(slot)

    def _drop_stuck_pending(self) -> None:
        for slot in list(self.pending):
            if time.monotonic() - slot.created > self.opts.placement_timeout:
                self.pending.remove(slot)
                self._kill([slot])
                self.store.add_event(self.session_id, "warning",
                                     f"replacement actor not placed within "
                                     f"{self.opts.placement_timeout:g} s; going on without it")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sessions.ray_driver")
    p.add_argument("--session", type=int, required=True)
    p.add_argument("--address", default="auto",
                   help="Ray cluster: auto (the one started on this host), HOST:PORT, or "
                        "local (start a private one-node Ray)")
    p.add_argument("--actors", type=int, help="actors to start (default: one per GPU)")
    p.add_argument("--resource", default="GPU", help="resource each actor takes (GPU)")
    p.add_argument("--amount", type=float, default=1.0, help="how much of it per actor")
    p.add_argument("--device", default="cuda:0", help="torch device inside an actor")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads per actor")
    p.add_argument("--placement-timeout", type=float, default=120.0)
    p.add_argument("--replacements", type=int,
                   help="actors started to replace lost ones (default: as many as actors)")
    args = p.parse_args(argv)
    opts = RayOptions(address=args.address, actors=args.actors, resource=args.resource,
                      amount=args.amount, device=args.device, threads=args.threads,
                      placement_timeout=args.placement_timeout, replacements=args.replacements)
    return RayDriver(args.session, opts).run()


if __name__ == "__main__":
    sys.exit(main())
