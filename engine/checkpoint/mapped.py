"""Reading checkpoint files without copying them whole into the process first."""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any

import torch

_MADV_DONTNEED = 4  # Linux
_PAGE = os.sysconf("SC_PAGESIZE") if hasattr(os, "sysconf") else 4096
_libc: Any = None


def open_mapped(path: str | os.PathLike[str], mmap: bool = True) -> tuple[Any, bool]:
    """``torch.load`` on the CPU, weights only; (object, whether its tensors are mapped).

    Mapped tensors are read from the page cache as they are used instead of being
    copied whole into the process first; files in the legacy (non-zip) format fall
    back to a plain read.
    """
    if mmap:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True), True
        except RuntimeError as e:
            if "mmap" not in str(e) and "zip" not in str(e):
                raise
    return torch.load(path, map_location="cpu", weights_only=True), False


def release_pages(tensor: torch.Tensor) -> None:
    """Hand back the resident file pages of a tensor read from ``open_mapped(...)[1]``.

    Only for tensors of a *mapped* file: the pages are dropped from this process (they
    stay in the page cache, and a later read maps them again from the file), so a big
    file copied out tensor by tensor never sits in the process whole. On anonymous
    memory this would zero the tensor, hence the flag. A no-op off Linux.
    """
    global _libc
    if not sys.platform.startswith("linux"):
        return
    if not tensor.is_contiguous():
        return
    ptr, size = tensor.data_ptr(), tensor.numel() * tensor.element_size()
    start = -(-ptr // _PAGE) * _PAGE  # only whole pages inside the tensor's bytes
    end = (ptr + size) // _PAGE * _PAGE
    if end <= start:
        return
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    _libc.madvise(start, end - start, _MADV_DONTNEED)  # advisory: a failure changes nothing
