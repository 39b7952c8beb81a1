"""One line: which session, its state, chunks done, the whole session's ETA, workers."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from posegen_tui import fmt
from posegen_tui.data.loaders import SessionData
from posegen_tui.safe_text import printable
from posegen_tui.widgets.status_style import state_style


class SessionHeader(Static):
    def show(self, data: SessionData) -> None:
        s = data.session
        name = f" {printable(s['name'])}" if s.get("name") else ""
        live = sum(1 for w in data.workers if w["alive"])
        kind = (" (preview: a chooses the anchor)" if s.get("kind") == "preview" else
                f" (from preview {s['from_preview']})" if s.get("from_preview") else "")
        text = Text.assemble(
            (f"Session {s['id']}{name}", "bold"), (kind, "italic"),
            f" · {printable(data.project['name'])} · ",
            (data.state.upper(), state_style(data.state)),
            f" · {data.done}/{len(data.chunks)} chunks · ETA ",
            (fmt.eta(data.eta_seconds), "bold"))
        # Most important first: a narrow terminal cuts the end of the line.
        for c in (c for c in data.chunks if c.status == "running"):
            text.append(f" · chunk {c.idx} {c.step}/{c.steps or '?'} "
                        f"ETA {fmt.eta(c.eta(data.loaded_at))}")
        text.append(f" · {live} worker{'s' if live != 1 else ''} on {_where(s)}")
        if data.video:
            text.append(f" · video {data.video}", "green")
        if data.session.get("error"):
            text.append(f" · ! {data.session['error']}", "bold red")
        if s.get("on_done"):  # least important: the first thing a narrow line cuts
            text.append(f" · on done: {printable(s['on_done'])}", "dim")
        self.update(text)


def _where(session: dict) -> str:
    gpus = session.get("gpus") or ""
    return f"GPU {gpus}" if gpus and gpus != "cpu" else (session.get("device") or "cpu")
