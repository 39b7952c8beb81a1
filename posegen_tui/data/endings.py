"""Which sessions ended since the last look: every session in the store, not only the
one on screen. The read runs on a worker thread; `EndWatcher` compares on the UI thread."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from posegen_tui.data.store_access import opened
from sessions.control import workspace_of

ENDED = ("done", "failed", "stopped")


@dataclass(frozen=True)
class SessionBrief:
    id: int
    project: str
    state: str
    video: str | None = None  # done: the video, relative to $POSEGEN_HOME when under it
    error: str | None = None

    def message(self) -> str:
        """The words of the toast, e.g. session 12 of dance: done (sessions/0012/video.mp4)."""
        detail = self.video if self.state == "done" else self.error
        return (f"session {self.id} of {self.project}: {self.state}"
                + (f" ({detail})" if detail else ""))


def load_states(home: Path) -> dict[int, SessionBrief]:
    """Every session's stored state (archived ones too: an archived run may still end)."""
    out = {}
    with opened(home) as store:
        for s in store.list_sessions(include_archived=True):
            error = (s.get("error") or "").strip().splitlines()
            out[s["id"]] = SessionBrief(s["id"], s["project_name"], s["state"],
                                        _video(home, s) if s["state"] == "done" else None,
                                        error[0] if error else None)
    return out


def _video(home: Path, session: dict) -> str | None:
    workspace = workspace_of(session)
    if workspace is None or not workspace.video.is_file():
        return None
    try:
        return str(workspace.video.relative_to(home.resolve()))
    except ValueError:
        return str(workspace.video)


class EndWatcher:
    """Turns successive reads into endings: a session that was not ended and now is.

    The first read only sets what is known (sessions that ended before the app started
    are not news); each ending is reported once, since the next read compares with it.
    """

    def __init__(self) -> None:
        self.known: dict[int, str] | None = None

    def update(self, states: dict[int, SessionBrief]) -> list[SessionBrief]:
        before, self.known = self.known, {i: b.state for i, b in states.items()}
        if before is None:
            return []
        return [b for i, b in sorted(states.items())
                if b.state in ENDED and i in before and before[i] not in ENDED]
