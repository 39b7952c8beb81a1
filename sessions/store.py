"""The session store: projects, sessions, chunks, workers, events and GPU samples.

Workers (one process per GPU) and viewers (app, CLI) share one SQLite file on local disk.
WAL lets viewers read while a worker writes; every write is one short ``BEGIN IMMEDIATE``
transaction, so read-then-write steps (claiming, retry, reclaim) cannot interleave and a
busy writer is waited for (``busy_timeout``) instead of failing.

Rules for callers:
- One ``Store`` per thread (and per process: never carry one across ``fork``). The
  connection refuses use from another thread.
- Timestamps are ``time.time()`` floats (UTC epoch seconds).
- Chunk updates (progress, finish, fail, release) apply only to a ``running`` chunk (and,
  when ``worker_id`` is given, only to that worker's); they return False otherwise, which
  tells a worker it lost the chunk (reclaimed as lost, or retried).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.settings import FRAMINGS

from . import schema
from ._sqlite_utils import Database, last_rowid, table
from .scheduling import pick_chunk
from .states import STATES, IllegalMove, check_chunk_move, check_move

DESIRED = ("run", "pause", "stop")
ROLES = ("anchor", "base", "cond")
SESSION_KINDS = ("full", "preview")
CHUNK_STATUSES = ("pending", "ready", "running", "done", "failed", "stale")
# A worker whose heartbeat is older than this is lost (its chunk goes back to ready).
WORKER_TIMEOUT_S = float(os.environ.get("POSEGEN_WORKER_TIMEOUT_S", "30"))
# GPU sample retention: raw for an hour, 1-minute means for a day, 10-minute means beyond.
RAW_KEEP_S = 3600.0
MINUTE_KEEP_S = 86400.0

HOST = socket.gethostname()

# A chunk may start when every index in deps_json is a done chunk of the same session.
_DEPS_DONE = """NOT EXISTS (
    SELECT 1 FROM json_each({c}.deps_json) AS d
    LEFT JOIN chunks AS p ON p.session_id = {c}.session_id AND p.idx = d.value
    WHERE p.status IS NOT 'done')"""


class StoreError(RuntimeError):
    """A one-line, user-facing problem with the session store that says what to do."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    if pid <= 0:  # kill(0, ...) would signal our own process group
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A killed process whose parent never reaped it (containers often lack an init
    that does) still answers kill(0): it is dead all the same."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _check_printable(what: str, value: str) -> None:
    """Names are shown in terminals: no escape sequences or other control characters."""
    if not value.isprintable():
        bad = next(ch for ch in value if not ch.isprintable())
        raise StoreError(f"{what} {value.encode('unicode_escape').decode('ascii')!r} holds the "
                         f"control character {bad.encode('unicode_escape').decode('ascii')}; "
                         "use printable characters only")


def _text(value: Any, sep: str = " ") -> str | None:
    """Settings given as a list or a string are stored as the text the user would type."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Iterable):
        return sep.join(str(v) for v in value)
    return str(value)


def _one_of(kind: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise StoreError(f"{kind} {value!r}: use one of {', '.join(allowed)}")


class Store:
    def __init__(self, path: Path | str, *, readonly: bool = False,
                 busy_timeout_ms: int = 15000) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.busy_timeout_ms = int(busy_timeout_ms)
        with self._creation_lock():
            conn = self._connect()
            try:
                self.db = Database(conn, execute_plugins=False)
                self._configure()
                self._check_schema()
            except BaseException as e:
                conn.close()
                if isinstance(e, sqlite3.Error):
                    raise self._error(e, opening=True) from e
                raise

    @contextlib.contextmanager
    def _creation_lock(self) -> Iterator[None]:
        """Creating the file (connect, WAL header, schema) under a lock beside it.

        A database file of 0 bytes is then never one being created (its creator holds
        the lock until the header is written): it was truncated, and opening it would
        silently start an empty store over the lost one.
        """
        if self.readonly or (self.path.is_file() and self.path.stat().st_size > 0):
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".create-lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.path.is_file() and self.path.stat().st_size == 0:
                raise StoreError(
                    f"{self.path} is empty (0 bytes): the database was cut short (a full "
                    "disk, an interrupted copy). Restore it from a backup, or move it aside "
                    f"(`mv {self.path} {self.path}.empty`) and run `posegen init` to start a "
                    "new one; the session folders beside it are untouched")
            yield

    # -- connection -------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a folder, not a database file; pass the file path")
        if self.readonly:
            if not self.path.is_file():
                raise StoreError(f"no posegen database at {self.path}; create one with "
                                 "`posegen init`")
            target, uri = f"{self.path.resolve().as_uri()}?mode=ro", True
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create {self.path.parent} ({e.strerror}); check its "
                                 "permissions or set POSEGEN_HOME to a writable folder") from e
            target, uri = str(self.path), False
        new = not self.readonly and not self.path.exists()
        try:
            # isolation_level=None: no implicit transactions; we issue BEGIN IMMEDIATE.
            conn = sqlite3.connect(target, uri=uri, timeout=self.busy_timeout_ms / 1000,
                                   isolation_level=None)
        except sqlite3.Error as e:
            raise self._error(e) from e
        if new:  # owner-only, like the home folder: prompts and paths are private
            os.chmod(self.path, 0o600)
        return conn

    def _configure(self) -> None:
        ex = self.db.execute
        ex(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        ex("PRAGMA foreign_keys = ON")
        ex("SELECT count(*) FROM sqlite_master")  # fails here on a corrupt file
        if not self.readonly:
            ex("PRAGMA journal_mode = WAL")
            ex("PRAGMA synchronous = NORMAL")  # safe with WAL; fsync only at checkpoints

    def _check_schema(self) -> None:
        version = schema.user_version(self.db)
        if version > schema.CURRENT_VERSION:
            raise self._too_new(version)
        if self.readonly:
            if version == 0:
                raise StoreError(f"no posegen database at {self.path}; create one with "
                                 "`posegen init`")
            if version < schema.CURRENT_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {version}, this posegen-tui needs "
                    f"{schema.CURRENT_VERSION}; run any posegen command without read-only "
                    "access once to upgrade it")
            return
        try:
            schema.migrate(self.db)
        except schema.SchemaTooNew as e:
            raise self._too_new(e.found) from e
        except schema.ForeignDatabase as e:
            raise StoreError(f"{self.path} is an SQLite database but not a posegen one; "
                             "point POSEGEN_HOME elsewhere or move the file aside") from e

    def _too_new(self, version: int) -> StoreError:
        return StoreError(
            f"{self.path} has schema version {version}, newer than this posegen-tui "
            f"understands ({schema.CURRENT_VERSION}); upgrade posegen-tui")

    def _error(self, e: sqlite3.Error, opening: bool = False) -> StoreError:
        text = str(e)
        low = text.lower()
        p = self.path
        if "not a database" in low or "malformed" in low or "corrupt" in low:
            return StoreError(
                f"{p} is not a posegen database (corrupt?); move it aside and run "
                "`posegen init` again, or restore a backup")
        if self.readonly and opening and "readonly" in low:
            # WAL readers still create {name}-shm beside the file.
            return StoreError(
                f"cannot read {p} ({text}): even readers need to create {p.name}-shm in "
                f"{p.parent}; make that folder writable for you, or copy the file elsewhere")
        if self.readonly and "readonly" in low:
            return StoreError(f"cannot write {p}: it was opened read-only; open it without "
                              "read-only to change it")
        if "readonly" in low or "read-only" in low or "unable to open" in low:
            return StoreError(
                f"cannot open or write {p} ({text}); check that you can write the file and "
                f"its folder {p.parent} (permissions, owner, read-only mount)")
        if "full" in low or "disk i/o" in low:
            free = shutil.disk_usage(p.parent).free if p.parent.exists() else 0
            what = "is full" if free < 64 << 20 else "reported an I/O error"
            return StoreError(
                f"the disk holding {p} {what} ({text}; {free / 1e6:.0f} MB free): free space "
                f"there (`posegen cache SESSION --clear`, old session folders in "
                f"{p.parent / 'sessions'}) and run the command again; saved work is kept")
        if "locked" in low or "busy" in low:
            return StoreError(
                f"{p} is busy: another posegen process held its write lock for over "
                f"{self.busy_timeout_ms / 1000:g} s; try again, or look for a hung posegen")
        return StoreError(f"database error in {p}: {text}")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[Database]:
        """One short write transaction holding the write lock from its start."""
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.rollback()
                raise
            db.execute("COMMIT")
        except sqlite3.Error as e:
            db.rollback()
            raise self._error(e) from e

    def _rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict]:
        try:
            return list(self.db.query(sql, params))
        except sqlite3.Error as e:
            raise self._error(e) from e

    def _row(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> dict | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    # -- projects ---------------------------------------------------------------------

    def create_project(self, name: str, *, image: str, pose: str, hand: str, prompt: str,
                       framing: str | None = None, driving: str | None = None) -> int:
        if not name or not name.strip():
            raise StoreError("project name is empty; give the project a name")
        _check_printable("project name", name)
        if framing is not None:
            _one_of("framing", framing, tuple(FRAMINGS))
        with self._tx() as db:
            if self._row("SELECT id FROM projects WHERE name = ?", [name]):
                raise StoreError(f"project '{name}' already exists; pick another name, or "
                                 "archive or delete the old one")
            inserted = table(db, "projects").insert({
                "name": name, "image": str(image), "pose": str(pose), "hand": str(hand),
                "driving": _text(driving), "prompt": prompt, "framing": framing,
                "created_at": time.time(), "archived": 0})
            return last_rowid(inserted)

    def get_project(self, name_or_id: str | int) -> dict:
        row = None
        if isinstance(name_or_id, int):
            row = self._row("SELECT * FROM projects WHERE id = ?", [name_or_id])
        else:
            row = self._row("SELECT * FROM projects WHERE name = ?", [name_or_id])
            if row is None and name_or_id.isdigit():
                row = self._row("SELECT * FROM projects WHERE id = ?", [int(name_or_id)])
        if row is None:
            raise StoreError(f"unknown project '{name_or_id}'; list them with `posegen status` "
                             "or create one with `posegen init`")
        return row

    def list_projects(self, include_archived: bool = False) -> list[dict]:
        return self._rows("SELECT * FROM projects WHERE ? OR archived = 0 ORDER BY id",
                          [int(include_archived)])

    def archive_project(self, name_or_id: str | int, archived: bool = True) -> None:
        with self._tx() as db:
            pid = self.get_project(name_or_id)["id"]
            db.execute("UPDATE projects SET archived = ? WHERE id = ?", [int(archived), pid])

    def delete_project(self, name_or_id: str | int) -> None:
        """Delete a project and all its sessions' rows (not their workspace folders)."""
        with self._tx() as db:
            project = self.get_project(name_or_id)
            ids = [r["id"] for r in self._rows(
                "SELECT id FROM sessions WHERE project_id = ?", [project["id"]])]
            live = self._live_workers(ids)
            if live:
                raise StoreError(
                    f"project '{project['name']}' has running workers (session "
                    f"{live[0]['session_id']}); stop its sessions first")
            for sid in ids:
                self._delete_session_rows(db, sid)
            db.execute("DELETE FROM projects WHERE id = ?", [project["id"]])

    # -- sessions ---------------------------------------------------------------------

    def create_session(self, project_id: int | str, *, settings: dict[str, Any], seed: int,
                       steps: int, cfg: float, share_steps: str | Sequence[int],
                       share_blocks: str | Sequence[int], anchor: int,
                       budget: str | None, ckpt: str, device: str, gpus: str | Sequence[Any],
                       workspace: str | Path | None = None, name: str | None = None,
                       kind: str = "full", from_preview: int | None = None,
                       on_done: str | None = None) -> int:
        if kind not in SESSION_KINDS:
            raise StoreError(f"session kind {kind!r}: expected one of {SESSION_KINDS}")
        if name is not None:
            _check_printable("session name", name)
        now = time.time()
        with self._tx() as db:
            pid = self.get_project(project_id)["id"]
            # Never an id a deleted session had: its workspace folder may still exist.
            last = self._rows("SELECT max(coalesce((SELECT last FROM counters WHERE name = "
                              "'sessions'), 0), coalesce((SELECT max(id) FROM sessions), 0)) "
                              "AS n")[0]["n"]  # an aggregate: always one row
            db.execute("INSERT INTO counters (name, last) VALUES ('sessions', :n) "
                       "ON CONFLICT (name) DO UPDATE SET last = :n", {"n": last + 1})
            inserted = table(db, "sessions").insert({
                "id": last + 1, "project_id": pid, "name": name,
                "settings_json": json.dumps(settings),
                "seed": seed, "steps": steps, "cfg": cfg, "share_steps": _text(share_steps),
                "share_blocks": _text(share_blocks), "anchor": anchor,
                "budget": _text(budget), "ckpt": str(ckpt), "device": device,
                "gpus": _text(gpus, ","),
                "workspace": None if workspace is None else str(workspace),
                "state": "created", "desired": "run", "error": None, "created_at": now,
                "updated_at": now, "archived": 0, "kind": kind,
                "from_preview": from_preview, "on_done": on_done})
            return last_rowid(inserted)

    def _session(self, session_id: int) -> dict:
        row = self._row(
            "SELECT s.*, p.name AS project_name FROM sessions s "
            "JOIN projects p ON p.id = s.project_id WHERE s.id = ?", [int(session_id)])
        if row is None:
            raise StoreError(f"unknown session {session_id}; `posegen status` lists sessions")
        row["settings"] = json.loads(row.pop("settings_json") or "{}")
        return row

    def get_session(self, session_id: int) -> dict:
        """The session row, ``settings`` decoded, plus ``project_name``."""
        return self._session(session_id)

    def list_sessions(self, project_id: int | str | None = None,
                      include_archived: bool = False) -> list[dict]:
        """Sessions with ``project_name``, ``chunks_done`` and ``chunks_total``.

        ``chunks_total`` is the planned count (``settings.planned_chunks``, from `session
        new`) until a worker has stored the plan. Sessions of an archived project count
        as archived.
        """
        pid = None if project_id is None else self.get_project(project_id)["id"]
        rows = self._rows(
            """SELECT s.*, p.name AS project_name,
                 (SELECT count(*) FROM chunks c
                  WHERE c.session_id = s.id AND c.status = 'done') AS chunks_done,
                 coalesce(nullif((SELECT count(*) FROM chunks c WHERE c.session_id = s.id), 0),
                          json_extract(s.settings_json, '$.planned_chunks'), 0)
                   AS chunks_total
               FROM sessions s JOIN projects p ON p.id = s.project_id
               WHERE (:pid IS NULL OR s.project_id = :pid)
                 AND (:all OR (s.archived = 0 AND p.archived = 0))
               ORDER BY s.id""", {"pid": pid, "all": int(include_archived)})
        for row in rows:
            row["settings"] = json.loads(row.pop("settings_json") or "{}")
        return rows

    def set_session_state(self, session_id: int, state: str, *,
                          error: str | None = None) -> None:
        """Set the state; ``error`` is written as given (None clears an old error).

        Only the moves of ``sessions.states.MOVES``; any other raises a StoreError.
        """
        _one_of("session state", state, STATES)
        with self._tx() as db:
            self._check_move(session_id, self._session(session_id)["state"], state)
            db.execute("UPDATE sessions SET state = ?, error = ?, updated_at = ? WHERE id = ?",
                       [state, error, time.time(), session_id])

    def request(self, session_id: int, desired: str) -> dict:
        """Ask workers to run, pause or stop; returns the updated session.

        With live workers the state becomes pausing/stopping and the workers finish the
        transition; with none it becomes paused/stopped at once. ``run`` only cancels a
        pending pause/stop of live workers: starting workers is the caller's job.
        """
        _one_of("request", desired, DESIRED)
        with self._tx() as db:
            s = self._session(session_id)
            state = s["state"]
            live = bool(self._live_workers([session_id]))
            if desired == "pause":
                if state in ("done", "stopped", "failed"):
                    raise StoreError(f"session {session_id} is {state}; nothing to pause")
                state = "pausing" if live else "paused"
            elif desired == "stop":
                if state != "done":
                    state = "stopping" if live else "stopped"
            elif live and state in ("pausing", "stopping"):
                state = "running"
            self._check_move(session_id, s["state"], state)
            db.execute("UPDATE sessions SET desired = ?, state = ?, updated_at = ? WHERE id = ?",
                       [desired, state, time.time(), session_id])
        return self._session(session_id)

    @staticmethod
    def _check_move(session_id: int, old: str, new: str) -> None:
        try:
            check_move(session_id, old, new)
        except IllegalMove as e:
            raise StoreError(str(e)) from None

    @staticmethod
    def _check_chunk_move(session_id: int, idx: int, old: str, new: str) -> None:
        try:
            check_chunk_move(session_id, idx, old, new)
        except IllegalMove as e:
            raise StoreError(str(e)) from None

    def claim_on_done(self, session_id: int, now: float | None = None) -> bool:
        """Take the session's --on-done command for this ending; True for the one caller
        that won (one conditional UPDATE: two workers settling at once never both run it)."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE sessions SET on_done_claimed_at = ? WHERE id = ? "
                "AND on_done IS NOT NULL AND on_done_claimed_at IS NULL",
                [time.time() if now is None else now, session_id])
            return cur.rowcount == 1

    def release_on_done(self, session_id: int) -> None:
        """A new run of the session: its next ending runs --on-done again."""
        with self._tx() as db:
            db.execute("UPDATE sessions SET on_done_claimed_at = NULL WHERE id = ?",
                       [session_id])

    def set_workspace(self, session_id: int, path: str | Path) -> None:
        self._update_session(session_id, workspace=str(path))

    def archive_session(self, session_id: int, archived: bool = True) -> None:
        self._update_session(session_id, archived=int(archived))

    def _update_session(self, session_id: int, **values: Any) -> None:
        with self._tx() as db:
            self._session(session_id)
            values["updated_at"] = time.time()
            table(db, "sessions").update(session_id, values)

    def delete_session(self, session_id: int) -> None:
        """Delete the session's rows (not its workspace folder); refused while it runs."""
        with self._tx() as db:
            self._session(session_id)
            if self._live_workers([session_id]):
                raise StoreError(f"session {session_id} has running workers; stop it first "
                                 f"(`posegen stop {session_id}`)")
            self._delete_session_rows(db, session_id)

    @staticmethod
    def _delete_session_rows(db: Database, session_id: int) -> None:
        for name in ("events", "chunks", "workers"):
            db.execute(f"DELETE FROM {name} WHERE session_id = ?", [session_id])
        db.execute("DELETE FROM sessions WHERE id = ?", [session_id])

    # -- chunks -----------------------------------------------------------------------

    def init_chunks(self, session_id: int, chunks: list[dict]) -> bool:
        """Store the chunk plan once; False (no change) when the session already has one.

        Each dict: idx, role, start_frame, end_frame, deps (list of idx), steps.
        """
        idxs = [int(c["idx"]) for c in chunks]
        if len(set(idxs)) != len(idxs):
            raise StoreError(f"chunk plan for session {session_id} repeats an index")
        for c in chunks:
            _one_of("chunk role", c["role"], ROLES)
            missing = set(c.get("deps", ())) - set(idxs)
            if missing:
                raise StoreError(f"chunk {c['idx']} depends on chunks {sorted(missing)} that "
                                 "are not in the plan")
        now = time.time()
        with self._tx() as db:
            self._session(session_id)
            if self._row("SELECT 1 FROM chunks WHERE session_id = ? LIMIT 1", [session_id]):
                return False
            table(db, "chunks").insert_all([{
                "session_id": session_id, "idx": int(c["idx"]), "role": c["role"],
                "start_frame": c["start_frame"], "end_frame": c["end_frame"],
                "deps_json": json.dumps([int(d) for d in c.get("deps", ())]),
                "status": "pending" if c.get("deps") else "ready", "step": 0,
                "steps": c["steps"], "attempts": 0, "updated_at": now} for c in chunks])
        return True

    @staticmethod
    def _decode_chunk(row: dict) -> dict:
        row["deps"] = json.loads(row.pop("deps_json") or "[]")
        return row

    def chunks(self, session_id: int) -> list[dict]:
        rows = self._rows("SELECT * FROM chunks WHERE session_id = ? ORDER BY idx",
                          [session_id])
        return [self._decode_chunk(r) for r in rows]

    def past_chunk_times(self, session_id: int, limit: int = 200) -> list[dict]:
        """Finished chunks of this machine's other sessions at this session's size (device,
        height, width, frames per chunk, steps): what an ETA can go on before this session
        has measured anything. Newest first."""
        return self._rows(
            """SELECT c.role, c.steps, c.seconds_per_step, c.seconds FROM chunks c
               JOIN sessions o ON o.id = c.session_id, sessions s ON s.id = ?
               WHERE o.id != s.id AND c.status = 'done' AND c.seconds_per_step IS NOT NULL
                 AND o.device IS s.device AND o.steps IS s.steps
                 AND json_extract(o.settings_json, '$.height')
                     IS json_extract(s.settings_json, '$.height')
                 AND json_extract(o.settings_json, '$.width')
                     IS json_extract(s.settings_json, '$.width')
                 AND json_extract(o.settings_json, '$.frames')
                     IS json_extract(s.settings_json, '$.frames')
               ORDER BY c.finished_at DESC LIMIT ?""", [session_id, limit])

    def _chunk(self, session_id: int, idx: int) -> dict:
        row = self._row("SELECT * FROM chunks WHERE session_id = ? AND idx = ?",
                        [session_id, idx])
        if row is None:
            raise StoreError(self._out_of_range(session_id, idx))
        return self._decode_chunk(row)

    def _out_of_range(self, session_id: int, idx: int) -> str:
        span = self._row("SELECT min(idx) AS lo, max(idx) AS hi FROM chunks "
                         "WHERE session_id = ?", [session_id])
        if not span or span["lo"] is None:
            self._session(session_id)  # unknown session beats "no chunks"
            return f"chunk {idx}: session {session_id} has no chunks yet"
        return (f"chunk {idx} out of range: session {session_id} has chunks "
                f"{span['lo']}..{span['hi']}")

    def _refresh_ready(self, db: Database, session_id: int, now: float) -> None:
        """pending -> ready when all deps are done, and ready -> pending when one is not
        (both moves of the chunk table; tests/test_store.py checks they stay allowed)."""
        done = _DEPS_DONE.format(c="chunks")
        db.execute(
            f"""UPDATE chunks SET updated_at = :now,
                  status = CASE WHEN {done} THEN 'ready' ELSE 'pending' END
                WHERE session_id = :sid AND status IN ('pending', 'ready')
                  AND status != CASE WHEN {done} THEN 'ready' ELSE 'pending' END""",
            {"now": now, "sid": session_id})

    def claim_chunk(self, session_id: int, worker_id: int, loaded_kind: str | None = None
                    ) -> dict | None:
        """Give this worker the next chunk to run, or None if nothing can start now.

        ``loaded_kind`` is the DiT the worker holds ("base", "cond" or None); the
        choice among ready chunks is ``sessions.scheduling.pick_chunk``. Nothing is
        handed out while the session's ``desired`` is pause or stop.
        """
        now = time.time()
        with self._tx() as db:
            session = self._session(session_id)
            worker = self._row("SELECT * FROM workers WHERE id = ?", [worker_id])
            if worker is None or worker["session_id"] != session_id:
                raise StoreError(f"worker {worker_id} is not registered for session "
                                 f"{session_id}; register it first")
            if worker["ended_at"] is not None:
                raise StoreError(f"worker {worker_id} was marked ended "
                                 f"({worker['end_reason']}); start a new worker")
            self._refresh_ready(db, session_id, now)
            if session["desired"] != "run":
                return None
            rows = self._rows(
                f"""SELECT idx, role, status FROM chunks c
                    WHERE c.session_id = ? AND c.status IN ('pending', 'ready', 'stale')
                      AND {_DEPS_DONE.format(c="c")}""", [session_id])
            picked = pick_chunk([(r["idx"], r["role"]) for r in rows], loaded_kind)
            if picked is None:
                return None
            idx = picked[0]
            self._check_chunk_move(session_id, idx,
                                   next(r["status"] for r in rows if r["idx"] == idx), "running")
            # An attempt is a fresh start, or a start after a failure or a lost worker
            # (both leave an error); taking up a paused chunk again is the same attempt.
            db.execute(
                """UPDATE chunks SET status = 'running', worker_id = ?,
                     attempts = attempts + (started_at IS NULL OR error IS NOT NULL),
                     started_at = ?, finished_at = NULL, error = NULL, updated_at = ?
                   WHERE session_id = ? AND idx = ?""", [worker_id, now, now, session_id, idx])
            db.execute("UPDATE workers SET chunk_idx = ?, heartbeat_at = ? WHERE id = ?",
                       [idx, now, worker_id])
            return self._chunk(session_id, idx)

    def _running_update(self, session_id: int, idx: int, worker_id: int | None, sets: str,
                        params: dict[str, Any], *, to: str | None,
                        statuses: tuple[str, ...] = ("running",)) -> bool:
        """UPDATE a running chunk (of ``worker_id`` if given); False if it is not running.

        ``to``: the status it moves to (checked against the table), so its worker is free
        and dependents may start; None: it keeps running (progress).
        """
        with self._tx() as db:
            chunk = self._chunk(session_id, idx)
            if chunk["status"] not in statuses or (
                    worker_id is not None and chunk["worker_id"] != worker_id):
                return False
            if to is not None:
                self._check_chunk_move(session_id, idx, chunk["status"], to)
                sets = f"status = '{to}', {sets}"  # `to` is one of CHUNK_MOVES' keys
            now = time.time()
            db.execute(f"UPDATE chunks SET {sets}, updated_at = :now "
                       "WHERE session_id = :sid AND idx = :idx",
                       {**params, "now": now, "sid": session_id, "idx": idx,
                        "started": chunk["started_at"]})
            if to is not None:
                db.execute("UPDATE workers SET chunk_idx = NULL WHERE id = ? AND chunk_idx = ?",
                           [chunk["worker_id"], idx])
                self._refresh_ready(db, session_id, now)
            return True

    def chunk_progress(self, session_id: int, idx: int, *, step: int, steps: int,
                       seconds_per_step: float | None = None, eta_seconds: float | None = None,
                       worker_id: int | None = None) -> bool:
        return self._running_update(
            session_id, idx, worker_id,
            "step = :step, steps = :steps, "
            "seconds_per_step = coalesce(:sps, seconds_per_step), "
            "eta_seconds = coalesce(:eta, eta_seconds)",
            {"step": step, "steps": steps, "sps": seconds_per_step, "eta": eta_seconds},
            to=None)

    def finish_chunk(self, session_id: int, idx: int, *, seconds: float | None = None,
                     seconds_per_step: float | None = None, peak_vram_torch: int | None = None,
                     peak_vram_nvml: int | None = None, budget: str | None = None,
                     worker_id: int | None = None) -> bool:
        """Mark done (step = steps). ``seconds`` defaults to the time since the claim.

        The chunk keeps ``worker_id`` as a record of who made it; the worker's
        ``chunk_idx`` is cleared.
        """
        return self._running_update(
            session_id, idx, worker_id,
            "step = coalesce(steps, step), finished_at = :now, "
            "seconds = coalesce(:seconds, :now - :started), eta_seconds = 0, error = NULL, "
            "seconds_per_step = coalesce(:sps, seconds_per_step), "
            "peak_vram_torch = coalesce(:pt, peak_vram_torch), "
            "peak_vram_nvml = coalesce(:pn, peak_vram_nvml), budget = coalesce(:b, budget)",
            {"seconds": seconds, "sps": seconds_per_step, "pt": peak_vram_torch,
             "pn": peak_vram_nvml, "b": _text(budget)}, to="done")

    def fail_chunk(self, session_id: int, idx: int, error: str, *,
                   worker_id: int | None = None) -> bool:
        return self._running_update(
            session_id, idx, worker_id,
            "error = :error, finished_at = :now, eta_seconds = NULL",
            {"error": error}, to="failed")

    def release_chunk(self, session_id: int, idx: int, *, worker_id: int | None = None) -> bool:
        """Hand a running chunk back (pause/stop), or requeue a failed one (resume): ready
        again (pending if a dependency is no longer done), its step kept."""
        return self._running_update(
            session_id, idx, worker_id,
            "worker_id = NULL, eta_seconds = NULL", {}, to="ready",
            statuses=("running", "failed"))

    def retry_chunk(self, session_id: int, idx: int, seed: int | None = None) -> list[int]:
        """Run a chunk again from step 0 (``seed`` None = the session seed).

        Every chunk that transitively depends on it and is done or failed becomes stale.
        Returns the changed indices, this chunk first.
        """
        now = time.time()
        with self._tx() as db:
            rows = {c["idx"]: c for c in self.chunks(session_id)}
            if idx not in rows:
                raise StoreError(self._out_of_range(session_id, idx))
            dependents = self._dependents(rows, idx)
            busy = [i for i in (idx, *dependents) if rows[i]["status"] == "running"]
            if busy:
                which = "it" if busy[0] == idx else f"its dependent chunk {busy[0]}"
                raise StoreError(f"cannot retry chunk {idx} while {which} is running; pause "
                                 f"session {session_id} first")
            status = ("ready" if all(rows[d]["status"] == "done" for d in rows[idx]["deps"])
                      else "pending")
            self._check_chunk_move(session_id, idx, rows[idx]["status"], status)
            reset = ("step = 0, error = NULL, worker_id = NULL, started_at = NULL, "
                     "finished_at = NULL, eta_seconds = NULL, updated_at = :now")
            db.execute(f"UPDATE chunks SET status = :st, seed = :seed, {reset} "
                       "WHERE session_id = :sid AND idx = :idx",
                       {"st": status, "seed": seed, "now": now, "sid": session_id, "idx": idx})
            stale = [i for i in dependents if rows[i]["status"] in ("done", "failed")]
            for i in stale:
                self._check_chunk_move(session_id, i, rows[i]["status"], "stale")
                db.execute(f"UPDATE chunks SET status = 'stale', {reset} "
                           "WHERE session_id = :sid AND idx = :idx",
                           {"now": now, "sid": session_id, "idx": i})
            self._refresh_ready(db, session_id, now)
        return [idx, *stale]

    @staticmethod
    def _dependents(rows: dict[int, dict], idx: int) -> list[int]:
        """Indices that depend on ``idx`` directly or through other chunks, ascending."""
        users: dict[int, list[int]] = {i: [] for i in rows}
        for i, row in rows.items():
            for d in row["deps"]:
                users.setdefault(d, []).append(i)
        seen: set[int] = set()
        todo = [idx]
        while todo:
            for u in users.get(todo.pop(), ()):
                if u not in seen and u != idx:
                    seen.add(u)
                    todo.append(u)
        return sorted(seen)

    def all_done(self, session_id: int) -> bool:
        row = self._row("SELECT count(*) AS n, sum(status = 'done') AS done FROM chunks "
                        "WHERE session_id = ?", [session_id])
        return bool(row and row["n"] and row["n"] == row["done"])

    # -- workers ----------------------------------------------------------------------

    def register_worker(self, session_id: int, *, pid: int, host: str, device: str) -> int:
        now = time.time()
        with self._tx() as db:
            self._session(session_id)
            inserted = table(db, "workers").insert({
                "session_id": session_id, "pid": pid, "host": host, "device": device,
                "started_at": now, "heartbeat_at": now})
            return last_rowid(inserted)

    def heartbeat(self, worker_id: int, *, torch_allocated: int | None = None,
                  torch_peak: int | None = None, nvml_used: int | None = None,
                  nvml_total: int | None = None) -> bool:
        """Refresh the worker's heartbeat; False if it was marked ended (e.g. reclaimed as
        lost), in which case the worker should stop touching its chunk."""
        with self._tx() as db:
            cur = db.execute(
                """UPDATE workers SET heartbeat_at = ?,
                     torch_allocated = coalesce(?, torch_allocated),
                     torch_peak = coalesce(?, torch_peak), nvml_used = coalesce(?, nvml_used),
                     nvml_total = coalesce(?, nvml_total)
                   WHERE id = ? AND ended_at IS NULL""",
                [time.time(), torch_allocated, torch_peak, nvml_used, nvml_total, worker_id])
            return cur.rowcount == 1

    def end_worker(self, worker_id: int, reason: str) -> list[int]:
        """Mark the worker ended. A chunk it still runs goes back to ready (step kept);
        returns those indices. When the last live worker of a pausing/stopping session
        ends, the session becomes paused/stopped."""
        now = time.time()
        with self._tx() as db:
            worker = self._row("SELECT * FROM workers WHERE id = ?", [worker_id])
            if worker is None:
                raise StoreError(f"unknown worker {worker_id}")
            if worker["ended_at"] is not None:
                return []
            return self._end(db, worker, reason, now, f"worker {worker_id} ended ({reason})")

    def _end(self, db: Database, worker: dict, reason: str, now: float, note: str) -> list[int]:
        sid, wid = worker["session_id"], worker["id"]
        db.execute("UPDATE workers SET ended_at = ?, end_reason = ?, chunk_idx = NULL "
                   "WHERE id = ?", [now, reason, wid])
        held = [r["idx"] for r in self._rows(
            "SELECT idx FROM chunks WHERE session_id = ? AND worker_id = ? "
            "AND status = 'running' ORDER BY idx", [sid, wid])]
        for idx in held:
            self._check_chunk_move(sid, idx, "running", "ready")
            db.execute(
                """UPDATE chunks SET status = 'ready', worker_id = NULL, eta_seconds = NULL,
                     error = :note || ' at step ' || step || '/' || coalesce(steps, '?')
                             || '; requeued', updated_at = :now
                   WHERE session_id = :sid AND idx = :idx""",
                {"note": note, "now": now, "sid": sid, "idx": idx})
        if reason == "lost":  # only the store knows which worker was lost
            self._event(db, sid, "worker_lost",
                        note + (f"; requeued chunks {', '.join(map(str, held))}" if held else ""),
                        worker_id=wid, now=now)
        self._refresh_ready(db, sid, now)
        self._settle(db, sid, now)
        return held

    def _settle(self, db: Database, session_id: int, now: float) -> None:
        """pausing/stopping -> paused/stopped once no live worker is left."""
        if self._live_workers([session_id], now=now):
            return
        db.execute(
            """UPDATE sessions SET updated_at = ?,
                 state = CASE state WHEN 'pausing' THEN 'paused' ELSE 'stopped' END
               WHERE id = ? AND state IN ('pausing', 'stopping')""", [now, session_id])

    def reclaim_dead_workers(self, session_id: int, timeout_s: float,
                             now: float | None = None) -> list[int]:
        """End workers with a stale heartbeat (or, on this host, a gone pid) as "lost" and
        put their running chunks back to ready, step kept. Returns those chunk indices."""
        now = time.time() if now is None else now
        chunks: list[int] = []
        with self._tx() as db:
            for w in self._rows("SELECT * FROM workers WHERE session_id = ? "
                                "AND ended_at IS NULL ORDER BY id", [session_id]):
                if self._alive(w, now, timeout_s):
                    continue
                age = now - w["heartbeat_at"]
                why = (f"no heartbeat for {age:.0f} s" if age > timeout_s
                       else f"pid {w['pid']} is gone")
                chunks += self._end(db, w, "lost", now, f"worker {w['id']} lost ({why})")
        return sorted(chunks)

    @staticmethod
    def _alive(worker: dict, now: float, timeout_s: float) -> bool:
        return (worker["ended_at"] is None
                and now - worker["heartbeat_at"] <= timeout_s
                and (worker["host"] != HOST or pid_alive(worker["pid"])))

    def _live_workers(self, session_ids: Sequence[int], now: float | None = None,
                      timeout_s: float = WORKER_TIMEOUT_S) -> list[dict]:
        if not session_ids:
            return []
        now = time.time() if now is None else now
        marks = ", ".join("?" * len(session_ids))
        rows = self._rows(f"SELECT * FROM workers WHERE ended_at IS NULL "
                          f"AND session_id IN ({marks}) ORDER BY id", list(session_ids))
        return [w for w in rows if self._alive(w, now, timeout_s)]

    def workers(self, session_id: int, live_only: bool = False,
                timeout_s: float = WORKER_TIMEOUT_S) -> list[dict]:
        """Workers with an ``alive`` flag: not ended, heartbeat within ``timeout_s`` and,
        on this host, the pid exists."""
        now = time.time()
        rows = self._rows("SELECT * FROM workers WHERE session_id = ? ORDER BY id",
                          [session_id])
        for w in rows:
            w["alive"] = self._alive(w, now, timeout_s)
        return [w for w in rows if w["alive"]] if live_only else rows

    # -- events ----------------------------------------------------------------------

    def _event(self, db: Database, session_id: int, kind: str, message: str = "", *,
               chunk_idx: int | None = None, worker_id: int | None = None,
               now: float | None = None) -> int:
        inserted = table(db, "events").insert({
            "session_id": session_id, "t": time.time() if now is None else now, "kind": kind,
            "chunk_idx": chunk_idx, "worker_id": worker_id, "message": message})
        return last_rowid(inserted)

    def add_event(self, session_id: int, kind: str, message: str = "", *,
                  chunk_idx: int | None = None, worker_id: int | None = None) -> int:
        with self._tx() as db:
            self._session(session_id)
            return self._event(db, session_id, kind, message, chunk_idx=chunk_idx,
                               worker_id=worker_id)

    def events(self, session_id: int, after_id: int = 0, limit: int = 500) -> list[dict]:
        """Events with id > ``after_id``, oldest first: pass the last id seen to tail."""
        return self._rows("SELECT * FROM events WHERE session_id = ? AND id > ? "
                          "ORDER BY id LIMIT ?", [session_id, after_id, limit])

    def last_event(self, session_id: int, kind: str) -> dict | None:
        """The newest event of ``kind`` (e.g. the executor a session last started with)."""
        return self._row("SELECT * FROM events WHERE session_id = ? AND kind = ? "
                         "ORDER BY id DESC LIMIT 1", [session_id, kind])

    def latest_phases(self, session_id: int) -> dict[int, dict]:
        """Each chunk's newest ``phase`` event (loading, encoding, sampling, ...), by index."""
        rows = self._rows("SELECT chunk_idx, message, t FROM events WHERE id IN ("
                          "SELECT MAX(id) FROM events WHERE session_id = ? AND kind = 'phase' "
                          "GROUP BY chunk_idx)", [session_id])
        return {r["chunk_idx"]: r for r in rows if r["chunk_idx"] is not None}

    # -- GPU samples ------------------------------------------------------------------

    def add_gpu_sample(self, *, host: str, device_index: int, used: int, total: int,
                       util: float | None = None, temp: float | None = None,
                       worker_id: int | None = None, t: float | None = None) -> None:
        self.add_gpu_samples([{
            "host": host, "device_index": device_index, "used": used, "total": total,
            "util": util, "temp": temp, "worker_id": worker_id, "t": t}])

    def add_gpu_samples(self, samples: Iterable[dict[str, Any]]) -> None:
        """Many raw samples in one transaction (e.g. every GPU of a host per tick).

        Keys as in ``add_gpu_sample``; ``t`` defaults to now. Raw rows have resolution 0.
        """
        now = time.time()
        keys = ("host", "device_index", "used", "total", "util", "temp", "worker_id")

        def rows() -> Iterator[dict[str, Any]]:
            for s in samples:
                row = {k: s.get(k) for k in keys}
                row["t"] = now if s.get("t") is None else s["t"]
                row["resolution"] = 0.0
                yield row

        with self._tx() as db:
            table(db, "gpu_samples").insert_all(rows(), batch_size=5000)

    def gpu_samples(self, host: str | None = None, device_index: int | None = None,
                    since: float | None = None) -> list[dict]:
        """Samples oldest first; ``resolution`` is the seconds a row averages (0 = raw)."""
        return self._rows(
            """SELECT * FROM gpu_samples
               WHERE (:host IS NULL OR host = :host) AND (:dev IS NULL OR device_index = :dev)
                 AND (:since IS NULL OR t >= :since)
               ORDER BY host, device_index, t""",
            {"host": host, "dev": device_index, "since": since})

    def latest_gpu_samples(self, since: float | None = None) -> list[dict]:
        """The newest sample of every (host, device) with t >= ``since``, ordered by host
        and device: what each node's GPUs hold now (read-only; for the app's node view)."""
        # SQLite takes the bare columns of a max() aggregate from the row holding the max.
        return self._rows(
            """SELECT id, host, device_index, max(t) AS t, used, total, util, temp, worker_id,
                 resolution
               FROM gpu_samples WHERE :since IS NULL OR t >= :since
               GROUP BY host, device_index ORDER BY host, device_index""", {"since": since})

    def compact_gpu_samples(self, now: float | None = None) -> int:
        """Average raw samples older than an hour into 1-minute rows, and 1-minute rows
        older than a day into 10-minute rows. Returns how many rows went away.

        Only whole buckets are averaged, so running this often never splits a bucket.
        """
        now = time.time() if now is None else now
        with self._tx() as db:
            before = db.execute("SELECT count(*) FROM gpu_samples").fetchone()[0]
            self._bucket(db, 60, now - RAW_KEEP_S)
            self._bucket(db, 600, now - MINUTE_KEEP_S)
            after = db.execute("SELECT count(*) FROM gpu_samples").fetchone()[0]
        return int(before - after)

    @staticmethod
    def _bucket(db: Database, size: int, older_than: float) -> None:
        cutoff = math.floor(older_than / size) * size
        params = {"size": size, "cutoff": cutoff}
        db.execute(
            """INSERT INTO gpu_samples
                 (host, device_index, t, used, total, util, temp, worker_id, resolution)
               SELECT host, device_index, CAST(t / :size AS INTEGER) * :size AS bucket,
                 CAST(round(avg(used)) AS INTEGER), max(total), avg(util), avg(temp),
                 CASE WHEN count(worker_id) = count(*) AND min(worker_id) = max(worker_id)
                      THEN min(worker_id) END,
                 :size
               FROM gpu_samples WHERE t < :cutoff AND resolution < :size
               GROUP BY host, device_index, bucket""", params)
        db.execute("DELETE FROM gpu_samples WHERE t < :cutoff AND resolution < :size", params)
