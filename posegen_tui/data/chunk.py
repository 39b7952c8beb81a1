"""A chunk row of the store, typed for the widgets."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chunk:
    idx: int
    role: str  # anchor | base | cond
    start: int
    end: int  # exclusive
    status: str  # pending | ready | running | done | failed | stale
    step: int = 0
    steps: int | None = None
    seed: int | None = None
    worker_id: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float | None = None
    seconds: float | None = None
    seconds_per_step: float | None = None
    eta_seconds: float | None = None
    peak_vram_torch: int | None = None
    peak_vram_nvml: int | None = None
    budget: str | None = None
    attempts: int = 0
    error: str | None = None
    deps: tuple[int, ...] = ()
    planned: bool = False  # from the chunk plan; no worker has stored it yet
    # While running: what it is doing (loading, encoding, sampling, decoding, writing)
    # and for how long, from its newest phase event.
    phase: str | None = None
    phase_seconds: float | None = None

    @classmethod
    def from_row(cls, row: dict, phase: tuple[str, float] | None = None) -> Chunk:
        return cls(
            idx=row["idx"], role=row["role"], start=row["start_frame"], end=row["end_frame"],
            status=row["status"], step=row.get("step") or 0, steps=row.get("steps"),
            seed=row.get("seed"), worker_id=row.get("worker_id"),
            started_at=row.get("started_at"), finished_at=row.get("finished_at"),
            updated_at=row.get("updated_at"), seconds=row.get("seconds"),
            seconds_per_step=row.get("seconds_per_step"), eta_seconds=row.get("eta_seconds"),
            peak_vram_torch=row.get("peak_vram_torch"),
            peak_vram_nvml=row.get("peak_vram_nvml"), budget=row.get("budget"),
            attempts=row.get("attempts") or 0, error=row.get("error"),
            deps=tuple(row.get("deps") or ()),
            phase=phase[0] if phase else None, phase_seconds=phase[1] if phase else None)

    def eta(self, now: float) -> float | None:
        """The worker's ETA at its last progress write, less the time since."""
        if self.status != "running" or self.eta_seconds is None:
            return None
        return max(0.0, self.eta_seconds - (now - (self.updated_at or now)))
