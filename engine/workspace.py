"""Disk usage of a job workspace by kind, and which cache files are safe to clear."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from engine.atomic import leftover_temps

KINDS = {
    "anchor cache (K/V, maps)": "cache/anchor/*",
    "resume states": "chunks/*/state.safetensors",
    "chunk frames (lossless)": "chunks/*/frames.npy",
    "chunk previews (mp4)": "chunks/*/chunk.mp4",
    "conditions": "conditions.safetensors",
    "video": "video.mp4",
}


TEMPS = "interrupted writes (temp files)"


def disk_usage(out: str | Path) -> dict[str, int]:
    out = Path(out)
    usage = {kind: sum(p.stat().st_size for p in out.glob(pattern) if p.is_file())
             for kind, pattern in KINDS.items()}
    usage[TEMPS] = sum(p.stat().st_size for p in leftover_temps(out))
    return usage


def clearable(out: str | Path, chunks: Mapping[int, tuple[str, str]],
              writers_running: bool = False) -> list[Path]:
    """Files no unfinished chunk still needs. ``chunks``: index -> (role, status).

    Temp files of interrupted writes go too, unless ``writers_running`` (a live
    worker's temp file is a write in progress).
    The anchor's cache is read by base chunks: it goes once every base chunk is
    done. Conditions go once every chunk is done. Resume states of finished
    chunks are leftovers. Frames stay: they are the results the merge reads.
    """
    out = Path(out)
    done = {i for i, (_, status) in chunks.items() if status == "done"}
    bases = {i for i, (role, _) in chunks.items() if role == "base"}
    files: list[Path] = []
    if chunks and bases <= done:
        files += [p for p in (out / "cache" / "anchor").glob("*") if p.is_file()]
    if chunks and len(done) == len(chunks):
        files += [p for p in [out / "conditions.safetensors"] if p.exists()]
    for i in done:
        state = out / "chunks" / f"{i:03d}" / "state.safetensors"
        if state.exists():
            files.append(state)
    if not writers_running:
        files += leftover_temps(out)
    return files
