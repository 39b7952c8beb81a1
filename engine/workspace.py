"""A job's folder: every path in it, what is finished, what a retry forgets.

Torch-free on purpose: the CLI's read commands, the app and the executors ask it
about a session's files without loading the engine. The layout:

    OUT/run.json                      settings and input fingerprints
    OUT/conditions.safetensors        text features, CLIP tokens, reference latent
    OUT/cache/anchor/                 the anchor's K/V and keyword maps (+ manifest)
    OUT/chunks/NNN/state.safetensors  latents after the last finished step
    OUT/chunks/NNN/conditions.safetensors  the chunk's pose and hand latents
    OUT/chunks/NNN/frames.npy         decoded frames, lossless (what neighbours read)
    OUT/chunks/NNN/chunk.mp4          the same frames for people
    OUT/chunks/NNN/done.json          written last: the chunk is finished
    OUT/video.mp4                     the merged result
    OUT/logs/on_done.log              output of the session's --on-done command
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.atomic import leftover_temps

RUN_FILE = "run.json"
CONDITIONS_FILE = "conditions.safetensors"
CHUNK_CONDITIONS_FILE = "conditions.safetensors"  # per chunk: its pose and hand latents
DONE_FILE = "done.json"
FRAMES_FILE = "frames.npy"
STATE_FILE = "state.safetensors"
PREVIEW_FILE = "chunk.mp4"
VIDEO_FILE = "video.mp4"
ANCHOR_MANIFEST = "manifest.json"  # written last by the anchor: its cache is complete

KINDS = {
    "anchor cache (K/V, maps)": "cache/anchor/*",
    "resume states": f"chunks/*/{STATE_FILE}",
    "chunk frames (lossless)": f"chunks/*/{FRAMES_FILE}",
    "chunk previews (mp4)": f"chunks/*/{PREVIEW_FILE}",
    "conditions": CONDITIONS_FILE,
    "video": VIDEO_FILE,
}
TEMPS = "interrupted writes (temp files)"


class Workspace:
    """The one owner of a job folder's paths; everyone else asks it."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    # -- paths ---------------------------------------------------------------
    @property
    def run_file(self) -> Path:
        return self.root / RUN_FILE

    @property
    def conditions(self) -> Path:
        return self.root / CONDITIONS_FILE

    @property
    def anchor_cache_dir(self) -> Path:
        return self.root / "cache" / "anchor"

    @property
    def video(self) -> Path:
        return self.root / VIDEO_FILE

    @property
    def on_done_log(self) -> Path:
        return self.root / "logs" / "on_done.log"

    def chunk_dir(self, i: int) -> Path:
        return self.root / "chunks" / f"{i:03d}"

    def done_file(self, i: int) -> Path:
        return self.chunk_dir(i) / DONE_FILE

    def frames(self, i: int) -> Path:
        return self.chunk_dir(i) / FRAMES_FILE

    def state(self, i: int) -> Path:
        return self.chunk_dir(i) / STATE_FILE

    def chunk_conditions(self, i: int) -> Path:
        return self.chunk_dir(i) / CHUNK_CONDITIONS_FILE

    def preview(self, i: int) -> Path:
        return self.chunk_dir(i) / PREVIEW_FILE

    # -- what is finished ----------------------------------------------------
    def is_done(self, i: int) -> bool:
        """done.json is written last, after the frames: both present means finished."""
        return self.done_file(i).exists() and self.frames(i).exists()

    def done_record(self, i: int) -> dict[str, Any]:
        """The finished chunk's record (phases, seed, timings), as the engine wrote it."""
        return dict(json.loads(self.done_file(i).read_text()))

    def done_seed(self, i: int) -> int | None:
        """The seed a finished chunk was made with (a retry may have changed it)."""
        if not self.done_file(i).exists():
            return None
        seed = self.done_record(i).get("extra", {}).get("seed")
        return None if seed is None else int(seed)

    def anchor_cache_complete(self) -> bool:
        """The anchor finished writing its K/V cache (base chunks can read it)."""
        try:
            manifest = json.loads((self.anchor_cache_dir / ANCHOR_MANIFEST).read_text())
        except (OSError, ValueError):
            return False
        return isinstance(manifest, dict) and bool(manifest.get("complete"))

    def anchor_cache_files(self) -> list[Path]:
        return [p for p in self.anchor_cache_dir.glob("*") if p.is_file()]

    # -- forgetting ----------------------------------------------------------
    def invalidate(self, indices: list[int]) -> None:
        """Forget chunks' results so they are generated again (a retry).

        Their frames stay until overwritten: a neighbour never reads them, since
        the chunk is not done, and the merged video goes because it used them.
        """
        for i in indices:
            for path in (self.done_file(i), self.state(i), self.chunk_conditions(i)):
                path.unlink(missing_ok=True)
        self.video.unlink(missing_ok=True)

    def discard_outputs(self) -> None:
        """Remove every generated file (never the inputs or anything else)."""
        for sub in ("chunks", "cache"):
            shutil.rmtree(self.root / sub, ignore_errors=True)
        for path in (self.run_file, self.conditions, self.video):
            path.unlink(missing_ok=True)

    # -- disk ----------------------------------------------------------------
    def disk_usage(self) -> dict[str, int]:
        return disk_usage(self.root)

    def clearable(self, chunks: Mapping[int, tuple[str, str]],
                  writers_running: bool = False) -> list[Path]:
        return clearable(self.root, chunks, writers_running)


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
    ws = Workspace(out)
    done = {i for i, (_, status) in chunks.items() if status == "done"}
    bases = {i for i, (role, _) in chunks.items() if role == "base"}
    files: list[Path] = []
    if chunks and bases <= done:
        files += ws.anchor_cache_files()
    if chunks and len(done) == len(chunks):
        files += [p for p in [ws.conditions] if p.exists()]
    files += [ws.state(i) for i in sorted(done) if ws.state(i).exists()]
    if not writers_running:
        files += leftover_temps(ws.root)
    return files
