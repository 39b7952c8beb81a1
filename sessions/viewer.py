"""`posegen open`: hand a video to the desktop's viewer, or say how to fetch it over SSH."""

from __future__ import annotations

import getpass
import os
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def opener(env: Mapping[str, str], platform: str = sys.platform) -> str | None:
    """The system viewer's command where a desktop is there to show it, else None."""
    if platform == "darwin":
        return "open"
    if platform.startswith("linux") and (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
        return "xdg-open"
    return None


def open_detached(command: str, path: Path) -> bool:
    """Start the viewer in its own session with no tty, and do not wait: it outlives us.
    False when the command is not installed."""
    exe = shutil.which(command)
    if exe is None:
        return False
    subprocess.Popen([exe, str(path)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)
    return True


def scp_line(path: Path, env: Mapping[str, str]) -> str:
    """The command to run on the laptop: the address the SSH client reached us at
    (SSH_CONNECTION's server field) is the one it can reach again."""
    fields = env.get("SSH_CONNECTION", "").split()
    host = fields[2] if len(fields) == 4 else socket.gethostname()
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return f"scp {shlex.quote(f'{getpass.getuser()}@{host}:{path}')} ."


def open_video(path: Path, env: Mapping[str, str] = os.environ,
               platform: str = sys.platform) -> list[str]:
    """Open ``path`` on a desktop; the lines to print (the path first, alone)."""
    lines = [str(path)]
    command = opener(env, platform)
    if command is None:
        lines.append(f"no display here: copy it to your machine with\n  {scp_line(path, env)}")
    elif open_detached(command, path):
        lines.append(f"opened with {command}")
    else:
        lines.append(f"{command} not found: open the file with your video player")
    return lines
