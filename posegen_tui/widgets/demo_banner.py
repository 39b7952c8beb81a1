"""A plain warning that a session runs on a tiny checkpoint with random weights."""

from __future__ import annotations

from textual.widgets import Static

TEXT = "DEMO · RANDOM weights (tiny checkpoint): video is noise, the pipeline is real"


class DemoBanner(Static):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(TEXT, id=id)
