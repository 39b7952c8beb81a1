"""Recent events from the store above the tail of the worker's log file."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from posegen_tui import fmt
from posegen_tui.data.loaders import SessionData

EVENT_STYLES = {"error": "bold red", "worker_lost": "bold red", "chunk_done": "green",
                "merged": "bold green", "retry": "magenta", "cache_clear": "cyan"}


class ActivityLog(Widget):
    """Fills its height: half events, half log lines, newest at the bottom of each."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.data: SessionData | None = None

    def show(self, data: SessionData) -> None:
        self.data = data
        self.border_title = f"Events · {data.log_file}"
        self.refresh()

    def render(self) -> Text:
        data = self.data
        if data is None:
            return Text("")
        height, width = max(2, self.content_size.height), self.content_size.width
        log_rows = max(1, (height - 1) // 2)
        event_rows = height - log_rows - 1
        lines: list[Text] = []
        for e in data.events[-event_rows:] if event_rows else []:
            line = Text(f"{fmt.clock_time(e['t'])} ", "dim")
            line.append(f"{e['kind']:<12} ", EVENT_STYLES.get(e["kind"], "bold"))
            line.append(e["message"] or "")
            lines.append(line)
        lines += [Text("")] * (event_rows - len(lines))
        rule = f"-- {data.log_file} "
        lines.append(Text(rule + "-" * max(0, width - len(rule)), "dim"))
        tail = data.log_lines[-log_rows:] if data.log_lines else ["(no worker log yet)"]
        lines += [Text(ln, "dim" if not data.log_lines else "") for ln in tail]
        for line in lines:
            line.truncate(width, overflow="ellipsis")
        return Text("\n").join(lines)
