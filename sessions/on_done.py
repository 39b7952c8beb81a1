"""The session-end callback (`posegen session new --on-done CMD`): check it, run it.

`sessions.records` decides when (a done or failed ending, claimed once in the store);
this module only knows how: `/bin/sh -c CMD` in its own process session, so it
outlives the worker that started it and no terminal signal reaches it.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

MAX_LEN = 4096


def problem(cmd: str) -> str | None:
    """What is wrong with an --on-done command, in one line; None if nothing."""
    if not cmd.strip():
        return "--on-done is empty; give a shell command, e.g. --on-done 'notify-send done'"
    if not cmd.isprintable():
        bad = next(ch for ch in cmd if not ch.isprintable())
        return (f"--on-done holds the control character "
                f"{bad.encode('unicode_escape').decode('ascii')}; write it on one line "
                "with printable characters (join commands with ; or &&)")
    if len(cmd) > MAX_LEN:
        return f"--on-done is {len(cmd)} characters; at most {MAX_LEN} (put it in a script)"
    return None


def launch(cmd: str, env: Mapping[str, str], log: Path, cwd: Path) -> int:
    """Start ``cmd`` detached, output appended to ``log``; returns its pid at once."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as out:
        out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} "
                  f"session {env.get('POSEGEN_SESSION_ID', '?')} "
                  f"{env.get('POSEGEN_SESSION_STATE', '?')}: {cmd}\n".encode())
        out.flush()
        proc = subprocess.Popen(["/bin/sh", "-c", cmd], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, **env},
                                cwd=cwd if cwd.is_dir() else None, start_new_session=True,
                                close_fds=True)
    return proc.pid
