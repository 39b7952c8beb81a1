"""A session's states and the moves between them: one table, checked on every write.

The store refuses any other move with `IllegalMove` (a `StoreError`), so a late or stale
writer (a worker that outlived its session's end, a second viewer) cannot put a session
back into a state it has left. docs/sessions.md draws this table.
"""

from __future__ import annotations

STATES = ("created", "running", "pausing", "paused", "stopping", "stopped", "merging", "done",
          "failed")

_ACTIVE = {"running", "pausing", "paused", "stopping", "stopped", "merging", "done", "failed"}

# state -> the states it may move to (staying put is always allowed).
MOVES: dict[str, frozenset[str]] = {
    # made by `session new`; started, or asked to pause/stop before any worker ran
    "created": frozenset({"running", "pausing", "paused", "stopping", "stopped", "failed"}),
    "running": frozenset(_ACTIVE),
    # asked, workers finishing their step; a new request may turn one into the other
    "pausing": frozenset(_ACTIVE - {"done"}),
    "stopping": frozenset(_ACTIVE - {"done"}),
    # resume, a stop request, or a merge of chunks that are all done
    "paused": frozenset({"running", "stopping", "stopped", "merging", "done", "failed"}),
    "stopped": frozenset({"running", "merging", "done", "failed"}),
    "failed": frozenset({"running", "stopped", "merging", "done"}),
    "merging": frozenset({"done", "failed", "running", "pausing", "paused", "stopping",
                          "stopped"}),
    # finished; `posegen retry` reopens it (stopped, then resume)
    "done": frozenset({"stopped"}),
}


class IllegalMove(Exception):
    """A state write the table does not allow."""


def check_move(session_id: int, old: str, new: str) -> None:
    if new not in MOVES:
        raise IllegalMove(f"unknown session state {new!r}; use one of {', '.join(STATES)}")
    if new != old and new not in MOVES.get(old, frozenset()):
        allowed = ", ".join(sorted(MOVES.get(old, ()))) or "nothing"
        raise IllegalMove(f"session {session_id} is {old}: it cannot become {new} (from {old} "
                          f"it may become {allowed}); see docs/sessions.md#session-states")


# -- chunks --------------------------------------------------------------------------

CHUNK_STATES = ("pending", "ready", "running", "done", "failed", "stale")

# chunk status -> the statuses it may move to. The store's chunk writes name their move
# and are checked against this table (`check_chunk_move`).
CHUNK_MOVES: dict[str, frozenset[str]] = {
    # waits for its dependencies; ready once they are done; retried: stays waiting
    "pending": frozenset({"ready", "running"}),
    # claimable; pending again if a dependency was retried
    "ready": frozenset({"pending", "running"}),
    # a worker generates it: finished, failed, or handed back (pause, stop, lost worker)
    "running": frozenset({"done", "failed", "ready"}),
    # finished; retried (itself: pending/ready, or a chunk it read: stale)
    "done": frozenset({"pending", "ready", "stale"}),
    # requeued by resume (ready), retried, or made stale by a retried dependency
    "failed": frozenset({"pending", "ready", "stale"}),
    # read a retried chunk: generated again once that one is done
    "stale": frozenset({"pending", "ready", "running"}),
}


def check_chunk_move(session_id: int, idx: int, old: str, new: str) -> None:
    if new not in CHUNK_MOVES:
        raise IllegalMove(f"unknown chunk status {new!r}; use one of {', '.join(CHUNK_STATES)}")
    if new != old and new not in CHUNK_MOVES.get(old, frozenset()):
        allowed = ", ".join(sorted(CHUNK_MOVES.get(old, ()))) or "nothing"
        raise IllegalMove(f"chunk {idx} of session {session_id} is {old}: it cannot become "
                          f"{new} (from {old} it may become {allowed}); see "
                          "docs/sessions.md#chunk-states")
