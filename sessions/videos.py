"""Which video of a session to open, and what to say when it does not exist yet.

Read-only: `posegen open` and the app's player ask here, so both give the same advice.
"""

from __future__ import annotations

from pathlib import Path

from sessions.control import workspace_of
from sessions.store import Store, StoreError

WHY_NO_VIDEO = {
    "pending": "it is pending (it waits for the chunks it reads)",
    "ready": "it is ready and waits for a worker",
    "running": "it is being generated",
    "failed": "it failed; resume the session to try again",
    "stale": "it will be generated again (a chunk it reads was retried)",
}


class NoVideo(StoreError):
    """The asked-for video is not on disk; the message says what to do."""


def chunk_missing(idx: int, status: str) -> str:
    """'chunk 3 has no video yet: it is pending ...' for a chunk without its video."""
    why = WHY_NO_VIDEO.get(status)
    if why is None:  # done, yet the file is gone (deleted by hand)
        return f"chunk {idx} is done but its video file is missing; retry the chunk"
    return f"chunk {idx} has no video yet: {why}"


def merged_missing(state: str) -> str:
    if state == "done":
        return "the merged video is missing; merge the session again"
    return "no merged video yet: it is written when every chunk is done"


def find_video(store: Store, session_id: int, chunk: int | None = None) -> Path:
    """The merged video, or chunk ``chunk``'s (chunk.mp4); `NoVideo` says what to do."""
    session = store.get_session(session_id)  # StoreError for an unknown session
    ws = workspace_of(session)
    if chunk is None:
        if ws is not None and ws.video.is_file():
            return ws.video
        raise NoVideo(f"session {session_id}: {merged_missing(session['state'])} "
                      f"(`posegen status {session_id}` shows the chunks; "
                      f"`posegen open {session_id} --chunk K` opens a finished one)")
    rows = {r["idx"]: r for r in store.chunks(session_id)}
    if chunk not in rows:
        have = f"chunks 0-{max(rows)}" if rows else "no chunks yet (start it first)"
        raise NoVideo(f"session {session_id} has no chunk {chunk}: it has {have}")
    if ws is not None and ws.preview(chunk).is_file():
        return ws.preview(chunk)
    raise NoVideo(f"session {session_id}: {chunk_missing(chunk, rows[chunk]['status'])} "
                  f"(`posegen status {session_id}` shows the chunks; `posegen open "
                  f"{session_id}` opens the merged video once the session is done)")
