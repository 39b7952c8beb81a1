"""Versioned schema: an ordered list of migrations, the version kept in ``PRAGMA user_version``.

Migration N (1-based) turns a version N-1 database into version N. Never edit a released
migration: append a new one, so every existing database file takes the same path.
"""

from __future__ import annotations

from collections.abc import Callable

from ._sqlite_utils import Database, table


class SchemaTooNew(RuntimeError):
    """The file was written by a newer posegen-tui than this one."""

    def __init__(self, found: int) -> None:
        super().__init__(f"schema version {found} is newer than {CURRENT_VERSION}")
        self.found = found


class ForeignDatabase(RuntimeError):
    """A valid SQLite file that holds someone else's tables."""


def _v1(db: Database) -> None:
    """The first release: projects, sessions, chunks without accounting, events."""
    table(db, "projects").create(
        {"id": int, "name": str, "image": str, "pose": str, "hand": str, "driving": str,
         "prompt": str, "created_at": float},
        pk="id", not_null=["name", "image", "pose", "hand", "prompt", "created_at"])
    table(db, "projects").create_index(["name"], unique=True)
    table(db, "sessions").create(
        {"id": int, "project_id": int, "settings_json": str, "seed": int, "steps": int,
         "cfg": float, "share_steps": str, "share_blocks": str, "anchor": int, "budget": str,
         "ckpt": str, "device": str, "gpus": str, "workspace": str, "state": str,
         "desired": str, "error": str, "created_at": float, "updated_at": float},
        pk="id", foreign_keys=[("project_id", "projects", "id")],
        not_null=["project_id", "settings_json", "state", "desired", "created_at",
                  "updated_at"],
        defaults={"settings_json": "{}", "state": "created", "desired": "run"})
    table(db, "chunks").create(
        {"session_id": int, "idx": int, "role": str, "start_frame": int, "end_frame": int,
         "deps_json": str, "status": str, "step": int, "steps": int, "worker_id": int,
         "started_at": float, "finished_at": float, "error": str, "updated_at": float},
        pk=("session_id", "idx"), foreign_keys=[("session_id", "sessions", "id")],
        not_null=["role", "deps_json", "status", "step"],
        defaults={"deps_json": "[]", "status": "pending", "step": 0})
    table(db, "events").create(
        {"id": int, "session_id": int, "t": float, "kind": str, "chunk_idx": int,
         "worker_id": int, "message": str},
        pk="id", foreign_keys=[("session_id", "sessions", "id")],
        not_null=["session_id", "t", "kind", "message"], defaults={"message": ""})


def _v2(db: Database) -> None:
    """Archiving, framing, per-chunk accounting, workers, commands and GPU samples."""
    table(db, "projects").add_column("framing", str)
    table(db, "projects").add_column("archived", int, not_null_default=0)
    table(db, "sessions").add_column("name", str)
    table(db, "sessions").add_column("archived", int, not_null_default=0)
    chunks = table(db, "chunks")
    for col, typ in (("seed", int), ("seconds", float), ("seconds_per_step", float),
                     ("eta_seconds", float), ("peak_vram_torch", int),
                     ("peak_vram_nvml", int), ("budget", str)):
        chunks.add_column(col, typ)
    chunks.add_column("attempts", int, not_null_default=0)
    table(db, "workers").create(
        {"id": int, "session_id": int, "pid": int, "host": str, "device": str,
         "started_at": float, "heartbeat_at": float, "ended_at": float, "end_reason": str,
         "torch_allocated": int, "torch_peak": int, "nvml_used": int, "nvml_total": int,
         "chunk_idx": int},
        pk="id", foreign_keys=[("session_id", "sessions", "id")],
        not_null=["session_id", "pid", "host", "started_at", "heartbeat_at"])
    table(db, "commands").create(
        {"id": int, "session_id": int, "t": float, "kind": str, "args_json": str,
         "handled_at": float},
        pk="id", foreign_keys=[("session_id", "sessions", "id")],
        not_null=["session_id", "t", "kind", "args_json"], defaults={"args_json": "{}"})
    table(db, "gpu_samples").create(
        {"id": int, "host": str, "device_index": int, "t": float, "used": int, "total": int,
         "util": float, "temp": float, "worker_id": int, "resolution": float},
        pk="id", not_null=["host", "device_index", "t", "resolution"],
        defaults={"resolution": 0.0})
    # The hot queries: claiming/progress, the event tail, live workers, the GPU graph.
    chunks.create_index(["session_id", "status"])
    table(db, "events").create_index(["session_id", "id"])
    table(db, "workers").create_index(["session_id", "ended_at"])
    table(db, "commands").create_index(["session_id", "handled_at"])
    table(db, "gpu_samples").create_index(["host", "device_index", "t"])
    table(db, "gpu_samples").create_index(["t", "resolution"])


def _v3(db: Database) -> None:
    """Session ids that never repeat: the last one handed out, kept past deletes (a
    session's workspace folder is named by its id and must not pass to a new session)."""
    table(db, "counters").create({"name": str, "last": int}, pk="name", not_null=["last"])
    last = db.execute("SELECT coalesce(max(id), 0) FROM sessions").fetchone()[0]
    db.execute("INSERT INTO counters (name, last) VALUES ('sessions', ?)", [last])


def _v4(db: Database) -> None:
    """The `commands` table goes: every request is a column of its session (``desired``),
    read by the workers; the table was written and never read."""
    db.execute("DROP TABLE IF EXISTS commands")


def _v5(db: Database) -> None:
    """Preview sessions and the session-end callback: ``kind`` is 'full' or 'preview';
    ``from_preview`` names the preview a full session was made from; ``on_done`` is the
    user's command, and ``on_done_claimed_at`` when a worker took it (it runs once)."""
    sessions = table(db, "sessions")
    sessions.add_column("kind", str, not_null_default="full")
    sessions.add_column("from_preview", int)
    sessions.add_column("on_done", str)
    sessions.add_column("on_done_claimed_at", float)


MIGRATIONS: list[Callable[[Database], None]] = [_v1, _v2, _v3, _v4, _v5]
CURRENT_VERSION = len(MIGRATIONS)


def user_version(db: Database) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: Database, target: int = CURRENT_VERSION) -> int:
    """Run the migrations up to ``target``, one transaction each; returns the version before.

    Safe when several processes open a fresh file at once: each step re-reads the version
    under the write lock and skips work another process already did.
    """
    start = user_version(db)
    if start > CURRENT_VERSION:
        raise SchemaTooNew(start)
    if start == 0 and [n for n in db.table_names() if not n.startswith("sqlite_")]:
        raise ForeignDatabase("database has tables but no posegen schema version")
    for version in range(start + 1, target + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            if user_version(db) < version:
                MIGRATIONS[version - 1](db)
                # PRAGMA does not take parameters; version is our own int.
                db.execute(f"PRAGMA user_version = {int(version)}")
        except BaseException:
            db.rollback()
            raise
        db.execute("COMMIT")
    return start
