"""The one executor loop: claim, adopt what is on disk, run, finish, merge, settle.

Both executors run `drive`: the local worker (`sessions/worker.py`, one process
per GPU, chunks run inline) and the Ray driver (`sessions/ray_driver.py`, chunks
run on actors). What differs, where a chunk runs and how its end is noticed,
sits behind `Placement`; every store write goes through the workers'
`WorkerRecord` (`sessions/records.py`).
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from sessions.records import HEARTBEAT_S, WorkerRecord, merge_once
from sessions.store import Store


class Placement(Protocol):
    """Where chunks run. A record is one worker's row; ``loaded`` its DiT kind."""

    @property
    def lost(self) -> bool:
        """This executor was declared lost by another process: stop touching the session."""
        ...

    def refresh(self, desired: str) -> None:
        """Once a round: pass the session's wish on, drop workers that ended."""
        ...

    def idle(self) -> list[tuple[WorkerRecord, str | None]]:
        """Workers that can take a chunk now, with the DiT kind each holds."""
        ...

    def launch(self, record: WorkerRecord, row: dict[str, Any]) -> None:
        """Run the claimed chunk ``row`` on ``record``'s worker (inline, or handed off)."""
        ...

    def busy(self) -> bool:
        """A chunk is running somewhere (its end is still to be collected)."""
        ...

    def check_workers(self) -> None:
        """Raise when no worker is left to run the remaining chunks."""
        ...

    def wait(self) -> None:
        """Wait a little for progress, ends of chunks or new workers."""
        ...


def drive(store: Store, session_id: int, job: Any, place: Placement) -> str:
    """Run the session's chunks until done, paused, stopped, blocked or lost; the reason."""
    last_reclaim = float("-inf")
    while True:
        if place.lost:
            return "lost"
        desired = store.get_session(session_id)["desired"]
        place.refresh(desired)
        launched = False
        if desired == "run":
            workers = place.idle()
            if workers and time.monotonic() - last_reclaim >= HEARTBEAT_S:
                last_reclaim = time.monotonic()
                workers[0][0].reclaim_lost()  # chunks of workers whose heartbeat stopped
            for record, loaded in workers:
                launched = _hand_out(job, place, record, loaded) or launched
        if place.busy():
            place.wait()
            continue
        if launched:
            continue  # an inline placement ran it to the end already: look again at once
        if desired != "run":
            return "paused" if desired == "pause" else "stopped"
        if store.all_done(session_id):
            merge_once(store, session_id, job)
            return "done"
        place.check_workers()
        chunks = store.chunks(session_id)
        if not any(c["status"] == "running" for c in chunks) and \
                any(c["status"] == "failed" for c in chunks):
            return "blocked"  # what is left waits on a failed chunk: `posegen retry`
        place.wait()


def _hand_out(job: Any, place: Placement, record: WorkerRecord, loaded: str | None) -> bool:
    """Claim the next chunk for ``record``; one finished on disk just before a crash is
    adopted and the next claimed. True if a chunk was launched."""
    while (row := record.claim(loaded)) is not None:
        idx = row["idx"]
        if job.workspace.is_done(idx):
            record.finish(idx, job.workspace.done_record(idx), recovered=True)
            continue
        place.launch(record, row)
        return True
    return False
