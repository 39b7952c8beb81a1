"""Where posegen keeps its database, session workspaces and logs.

Every function creates the folder it returns, so callers can write straight away.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import platformdirs

DB_NAME = "posegen.db"


def home() -> Path:
    """``$POSEGEN_HOME`` if set, else the platform's per-user data folder."""
    env = os.environ.get("POSEGEN_HOME")
    root = Path(env).expanduser() if env else Path(platformdirs.user_data_dir("posegen"))
    _private_dir(root)
    return root


def _private_dir(path: Path) -> None:
    """Create ``path`` readable by its owner only: prompts, frames and logs live below,
    and on a shared GPU server other users must not read them. An existing folder keeps
    the permissions its owner gave it."""
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} is a file, not a folder; posegen keeps its database "
                                 "and sessions in a folder: point POSEGEN_HOME at one")
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)


def _root(root: Path | str | None) -> Path:
    if root is None:
        return home()
    path = Path(root).expanduser()
    _private_dir(path)
    return path


def db_path(home: Path | str | None = None) -> Path:
    """The database file (not created here: `Store` creates it)."""
    return _root(home) / DB_NAME


def workspace_dir(session_id: int, home: Path | str | None = None) -> Path:
    """Per-session folder for latents, caches and outputs."""
    path = _root(home) / "sessions" / f"{session_id:04d}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def fresh_workspace(session_id: int, home: Path | str | None = None) -> tuple[Path, Path | None]:
    """The new session's empty workspace, and where a leftover folder of that id went.

    A store made before session ids were kept unique may hand out the id of a deleted
    session whose folder is still there; that folder is moved aside (never deleted), so
    the new session does not inherit its chunks.
    """
    path = workspace_dir(session_id, home)
    if not any(path.iterdir()):
        return path, None
    aside = path.with_name(f"{path.name}.orphan-{time.strftime('%Y%m%d-%H%M%S')}")
    path.rename(aside)
    path.mkdir()
    return path, aside


def log_dir(home: Path | str | None = None) -> Path:
    path = _root(home) / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path
