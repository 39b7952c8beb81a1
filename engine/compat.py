"""Make diffsynth importable on CPU-only machines.

Every ``diffsynth`` import runs the package ``__init__``, which imports torchvision.
PyPI's Linux torchvision wheels are CUDA builds: next to a CPU torch their ``_C``
extension does not load, and torchvision 0.28 then still registers fake kernels for
``torchvision::nms`` / ``torchvision::qnms`` (the only two it does not guard), so
``import torchvision`` dies with ``RuntimeError: operator torchvision::nms does not
exist``. Declaring those two op schemas lets the import finish; the detection ops stay
unusable, and the engine uses none of them.

The schemas are declared only after a real import attempt failed for exactly that
reason: declaring them up front would claim the ``torchvision`` op namespace and break
a working ``_C`` extension.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_MISSING_OP_ERROR = "operator torchvision::nms does not exist"
_OP_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}

_lock = threading.Lock()
# The Library object must stay alive: its definitions are removed when it is collected.
_shim_library: torch.library.Library | None = None


def configure_cuda_allocator() -> None:
    """Let PyTorch grow its CUDA memory segments instead of carving fixed blocks.

    Streamed layers and per-step activations of different sizes fragment the
    default allocator: on an H100 a run whose predicted peak fit with 3 GiB to
    spare died with 4.8 GiB "reserved but unallocated" (docs/benchmarks.md).
    Must run before the first CUDA allocation; a user's own setting wins.
    """
    import os

    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")


def ensure_torchvision_importable() -> None:
    """Import torchvision, declaring the two missing op schemas first if needed."""
    global _shim_library
    with _lock:
        if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is None:
            return  # already imported, or absent (diffsynth's own ImportError says so)
        try:
            importlib.import_module("torchvision")
            return
        except RuntimeError as exc:
            if _MISSING_OP_ERROR not in str(exc):
                raise
        # Drop the half-imported package so the retry runs its __init__ from the start.
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        import torch  # here, not at the top: `posegen status` must not pay for torch

        lib = torch.library.Library("torchvision", "DEF")
        for schema in _OP_SCHEMAS.values():
            lib.define(schema)
        _shim_library = lib
        importlib.import_module("torchvision")


def torchvision_shim_active() -> bool:
    """True when the op schemas had to be declared (torchvision detection ops unusable)."""
    return _shim_library is not None


def import_diffsynth_module(name: str) -> ModuleType:
    """``importlib.import_module(name)`` for a diffsynth module, after the torchvision fix."""
    ensure_torchvision_importable()
    return importlib.import_module(name)
