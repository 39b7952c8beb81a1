"""Where posegen keeps its database, session workspaces and logs.

Every function creates the folder it returns, so callers can write straight away.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

DB_NAME = "posegen.db"


def home() -> Path:
    """``$POSEGEN_HOME`` if set, else the platform's per-user data folder."""
    env = os.environ.get("POSEGEN_HOME")
    root = Path(env).expanduser() if env else Path(platformdirs.user_data_dir("posegen"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _root(root: Path | str | None) -> Path:
    if root is None:
        return home()
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def db_path(home: Path | str | None = None) -> Path:
    """The database file (not created here: `Store` creates it)."""
    return _root(home) / DB_NAME


def workspace_dir(session_id: int, home: Path | str | None = None) -> Path:
    """Per-session folder for latents, caches and outputs."""
    path = _root(home) / "sessions" / f"{session_id:04d}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_dir(home: Path | str | None = None) -> Path:
    path = _root(home) / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path
