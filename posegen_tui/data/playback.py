"""What `o` on a session plays: the selected chunk's frames, else the merged video."""

from __future__ import annotations

from pathlib import Path

from posegen_tui.data.frame_source import PlayTarget
from posegen_tui.data.loaders import SessionData
from sessions.control import workspace_of
from sessions.videos import chunk_missing, merged_missing


def choose(data: SessionData, idx: int | None) -> PlayTarget | str:
    """The target, or a message that says why there is nothing to play and what to do.

    Two stats of local files (the store's home is on local disk), so the UI thread may ask.
    """
    ws = workspace_of(data.session)
    chunk = data.chunk(idx)
    if ws is not None and chunk is not None and ws.frames(chunk.idx).is_file():
        return PlayTarget(ws.frames(chunk.idx), f"chunk {chunk.idx}", ws.run_file)
    if data.video_path is not None:
        return PlayTarget(Path(data.video_path), "merged video")
    if chunk is None:
        return f"{merged_missing(data.state)} (m merges the finished chunks)"
    return f"{chunk_missing(chunk.idx, chunk.status)}; play the merged video once the " \
           f"session is done"
