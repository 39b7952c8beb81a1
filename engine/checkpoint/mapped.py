"""Reading checkpoint files without copying them whole into the process first."""

from __future__ import annotations

import os
from typing import Any

import torch


def load_mapped(path: str | os.PathLike[str], mmap: bool = True) -> Any:
    """``torch.load`` on the CPU, weights only, memory-mapped when asked and the file allows.

    Mapped tensors are read from the page cache as they are used instead of being
    copied whole into the process first; files in the legacy (non-zip) format fall
    back to a plain read.
    """
    if not mmap:
        return torch.load(path, map_location="cpu", weights_only=True)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as e:
        if "mmap" not in str(e) and "zip" not in str(e):
            raise
        return torch.load(path, map_location="cpu", weights_only=True)
