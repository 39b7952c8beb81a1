"""How a chunk status looks: a glyph that reads without colour, plus a colour."""

from __future__ import annotations

GLYPHS = {"done": "#", "running": ">", "ready": "-", "pending": ".", "failed": "!",
          "stale": "~"}
STYLES = {"done": "green", "running": "bold yellow", "ready": "cyan", "pending": "grey50",
          "failed": "bold red", "stale": "magenta"}
ORDER = ("done", "running", "ready", "pending", "failed", "stale")
STATE_STYLES = {"running": "bold yellow", "merging": "bold yellow", "done": "bold green",
                "failed": "bold red", "interrupted": "bold red", "paused": "cyan",
                "pausing": "cyan", "stopping": "magenta", "stopped": "magenta",
                "created": "grey50"}


def glyph(status: str) -> str:
    return GLYPHS.get(status, "?")


def style(status: str) -> str:
    return STYLES.get(status, "")


def state_style(state: str) -> str:
    return STATE_STYLES.get(state, "")
