"""Page-locked host memory for streamed DiT weights, without the allocator's round-up.

torch's pinned allocator rounds every request up to a power of two: a 141.6 MB FFN
weight takes 256 MB, and a DiT pinned tensor by tensor took about 1.5x its bytes of
host memory. The arena takes slabs of a power-of-two size (no round-up) and hands out
aligned views of them, first fit, so the waste is the slabs' unfilled tails.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

SLAB_BYTES = 1 << 30
ALIGN = 512


def _pinned_bytes(n: int) -> torch.Tensor:
    return torch.empty(n, dtype=torch.uint8, pin_memory=True)


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


class PinnedArena:
    """Views into pinned slabs; a slab is freed when no view of it is left.

    ``expected_bytes``: what will be asked for in all, so the last slab is sized to the
    remainder (a power of two) instead of a whole ``slab_bytes``.
    """

    def __init__(self, expected_bytes: int = 0, slab_bytes: int = SLAB_BYTES,
                 allocate: Callable[[int], torch.Tensor] = _pinned_bytes) -> None:
        self.slab_bytes = slab_bytes
        self.remaining = expected_bytes
        self._allocate = allocate
        self._slabs: list[list] = []  # [slab tensor, bytes used]
        self.slab_total = 0  # bytes of every slab taken

    def take(self, shape: tuple[int, ...] | torch.Size, dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised pinned tensor of ``shape`` and ``dtype``."""
        n = torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
        size = -(-max(n, 1) // ALIGN) * ALIGN
        self.remaining = max(0, self.remaining - size)
        for slab in self._slabs:
            if slab[1] + size <= slab[0].numel():
                return self._view(slab, size, n, shape, dtype)
        want = max(size, min(self.slab_bytes, _next_pow2(size + self.remaining)))
        slab = [self._allocate(_next_pow2(want)), 0]
        self.slab_total += slab[0].numel()
        self._slabs.append(slab)
        return self._view(slab, size, n, shape, dtype)

    def close(self) -> None:
        """Stop handing out views (the slabs live on in the views already taken)."""
        self._slabs.clear()

    @staticmethod
    def _view(slab: list, size: int, n: int, shape: tuple[int, ...] | torch.Size,
              dtype: torch.dtype) -> torch.Tensor:
        start = slab[1]
        slab[1] += size
        return slab[0][start:start + n].view(dtype).view(shape)
