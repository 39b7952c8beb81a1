"""Atomic file writes: write to a temp file in the same folder, fsync, rename.

A reader (or a resumed run) sees either the old file or the complete new one,
never a torn write, whatever kills the process in between.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temp path next to ``target``; on success rename it over ``target``.

    ``suffix`` keeps an extension on the temp name for writers that pick a format
    from it (ffmpeg, numpy). On any error the temp file is removed and ``target``
    is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}",
                                    dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; give the result the permissions a plain open() would.
    os.chmod(tmp, 0o666 & ~_current_umask())
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if _is_disk_full(e, target.parent):
            raise DiskFullError(errno.ENOSPC, "No space left on device", str(target)) from e
        raise


# mkstemp's names above: ".<target name>.<8 random characters>.tmp<suffix>".
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\.\w+)?$")


def leftover_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Temp files of atomic writes that never finished (the writer was killed).

    Only safe to remove while nothing writes under ``folder``.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob(".*.tmp*") if p.is_file() and _TEMP_NAME.match(p.name))


class DiskFullError(OSError):
    """A write failed because its disk is full (whatever library did the writing)."""


def _is_disk_full(e: BaseException, folder: Path) -> bool:
    if isinstance(e, DiskFullError):
        return False  # already converted further down
    if getattr(e, "errno", None) == errno.ENOSPC or "No space left" in str(e):
        return True
    # Some writers (numpy) report only a short write; check the disk itself.
    if isinstance(e, OSError):
        with contextlib.suppress(OSError):
            return shutil.disk_usage(folder).free < 1 << 20
    return False


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(target, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_with(target: str | os.PathLike[str], writer: Callable[[Path], None],
                      suffix: str = "") -> None:
    """Call ``writer(tmp_path)`` and move the result into place atomically."""
    with atomic_path(target, suffix=suffix) as tmp:
        writer(tmp)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Make the rename itself durable.

    Some filesystems cannot open or fsync a folder (EINVAL, EISDIR, EACCES...): the rename
    stands, only its durability is not promised. An I/O error is different: the disk
    failed to store what was just written, and the caller must hear it.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno == errno.EIO:
            raise OSError(errno.EIO, f"the disk failed to store the folder {path} (I/O error "
                          "on fsync); check the disk (dmesg), then resume", str(path)) from e
    finally:
        os.close(fd)
