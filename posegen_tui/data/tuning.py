"""Budget tuning: how peak VRAM grew with `-p` in past chunks, and a `-p` for a given GPU.

Pure functions; the budget screen shows their output and its basis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.errors import BudgetError
from engine.settings import parse_budget

MARGIN = 0.10  # keep 10% of the free memory unused: allocator fragmentation, other processes


def budget_params(text: str | None) -> int | None:
    """Parameter count of a stored `-p` text; None for 'none', 'auto' or anything unreadable.

    The engine's own parser (torch-free); the app only needs numbers for a fit, and an
    odd value simply drops out of it.
    """
    if text is None:
        return None
    try:
        value = parse_budget(str(text))
    except BudgetError:
        return None
    return value if isinstance(value, int) else None


def format_params(n: float) -> str:
    """A `-p` value to type: 3.4e9."""
    if n >= 1e3:
        exp = int(math.floor(math.log10(n)))
        mant = math.floor(n / 10**exp * 10 + 1e-9) / 10  # round down: a suggestion must fit
        return f"{mant:g}e{exp}"
    return str(int(n))


@dataclass(frozen=True)
class Point:
    session_id: int
    chunk: int
    role: str
    budget_text: str
    params: int | None
    peak_torch: int | None
    peak_nvml: int | None
    seconds_per_step: float | None

    @property
    def peak(self) -> int | None:
        """The fit uses torch's peak (this process only) and falls back to NVML's."""
        return self.peak_torch if self.peak_torch is not None else self.peak_nvml


def points_from_chunks(session: dict, chunks: list[dict]) -> list[Point]:
    """Finished chunks of one session as tuning points."""
    out = []
    for c in chunks:
        if c.get("status") != "done":
            continue
        # Workers store str(budget); "None" means the chunk ran with the session's -p none.
        text = c.get("budget")
        if text in (None, "", "None"):
            text = session.get("budget") or "none"
        out.append(Point(session["id"], c["idx"], c["role"], str(text), budget_params(text),
                         c.get("peak_vram_torch"), c.get("peak_vram_nvml"),
                         c.get("seconds_per_step")))
    return out


@dataclass(frozen=True)
class Suggestion:
    budget: str | None  # the `-p` to use, or None when there is no estimate
    basis: str  # how it was computed, or why it could not be


def suggest(points: list[Point], free_bytes: int | None, margin: float = MARGIN) -> Suggestion:
    """Fit peak = a + b * params over past chunks, then solve for (1 - margin) * free."""
    if free_bytes is None or free_bytes <= 0:
        return Suggestion(None, "no free-memory figure: choose a GPU or type its free GiB")
    usable = [(p.params, p.peak) for p in points if p.params is not None and p.peak is not None]
    skipped = len(points) - len(usable)
    note = f"; {skipped} chunk(s) without a numeric -p or a peak left out" if skipped else ""
    budgets = {x for x, _ in usable}
    if len(budgets) < 2:
        return Suggestion(None, f"too few points: {len(usable)} chunk(s) at {len(budgets)} "
                                f"budget value(s); a fit needs chunks run at 2 or more "
                                f"different -p values{note}")
    n = len(usable)
    mx = sum(x for x, _ in usable) / n
    my = sum(y for _, y in usable) / n
    sxx = sum((x - mx) ** 2 for x, _ in usable)
    b = sum((x - mx) * (y - my) for x, y in usable) / sxx
    a = my - b * mx
    target = free_bytes * (1 - margin)
    fit = (f"linear fit of peak VRAM vs -p over {n} chunks at {len(budgets)} budgets: "
           f"peak = {a / 2**30:.2f} GiB + {b * 1e9 / 2**30:.2f} GiB per 1e9 params; "
           f"target {target / 2**30:.1f} GiB = free {free_bytes / 2**30:.1f} GiB "
           f"less {margin:.0%} margin{note}")
    if b <= 0:
        return Suggestion(None, f"peak VRAM did not grow with -p ({fit}); no estimate")
    params = (target - a) / b
    if params <= 0:
        return Suggestion(None, f"even -p 0 needs {a / 2**30:.1f} GiB, more than the target "
                                f"({fit})")
    return Suggestion(format_params(params), fit)
