"""Copying checkpoint tensors to their device in pieces, on a few threads.

At full size the weights are ~45 GB of memory-mapped file pages. One ``tensor.to("cuda")``
from such pages ran at 0.45 GB/s on an H200 host (umT5: 11.4 GB in 25.5 s): the page
faults and the driver's pageable staging are serial. Here each tensor is cut into pieces;
each thread copies its piece into its own pinned buffer (the page faults, in parallel)
and from there to the device on its own stream, so reads and transfers overlap.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

from .mapped import release_pages

PIECE_BYTES = 32 << 20
MAX_THREADS = 4


def _bytes(t: torch.Tensor) -> torch.Tensor:
    """A flat uint8 view of a contiguous tensor's bytes."""
    return t.reshape(-1).view(torch.uint8) if t.numel() else t.new_empty(0, dtype=torch.uint8)


class ParallelCopy:
    """Copies CPU tensors to a device (or into host tensors) in pieces, several at once.

    ``pin``: stage device copies through page-locked buffers (needs CUDA). Copies into
    host tensors take the same pieces and threads without a buffer (what CPU tests run).
    """

    def __init__(self, threads: int | None = None, piece_bytes: int = PIECE_BYTES,
                 pin: bool | None = None) -> None:
        self.threads = threads or max(1, min(MAX_THREADS, os.cpu_count() or 1))
        self.piece_bytes = piece_bytes
        self.pin = torch.cuda.is_available() if pin is None else pin
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="posegen-copy")
        self._local = threading.local()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def to(self, src: torch.Tensor, device: torch.device | str,
           mapped: bool = False) -> torch.Tensor:
        """``src`` on ``device`` (same dtype); ``mapped``: release its file pages after."""
        dst = torch.empty(src.shape, dtype=src.dtype, device=device)
        self.copy_into(dst, src, mapped)
        return dst

    def copy_into(self, dst: torch.Tensor, src: torch.Tensor, mapped: bool = False) -> None:
        """``dst.copy_(src)`` for a contiguous ``dst`` of the same dtype and size."""
        if dst.dtype != src.dtype or dst.numel() != src.numel() or not dst.is_contiguous():
            raise ValueError(f"copy_into needs a contiguous destination of the source's dtype "
                             f"and size: {dst.dtype}{tuple(dst.shape)} <- "
                             f"{src.dtype}{tuple(src.shape)}")
        source = src if src.is_contiguous() else src.contiguous()
        s, d = _bytes(source), _bytes(dst)
        n = s.numel()
        starts = range(0, n, self.piece_bytes)
        pieces = [(a, min(a + self.piece_bytes, n)) for a in starts]
        # The side streams start after the caller's queued work: the allocator may have
        # handed ``dst`` memory that this work was still reading.
        ready = (torch.cuda.current_stream(d.device).record_event()
                 if d.device.type == "cuda" else None)
        if len(pieces) <= 1 or self.threads == 1:
            for a, b in pieces:
                self._copy_piece(d, s, a, b, ready)
        else:
            jobs = [self._pool.submit(self._copy_piece, d, s, a, b, ready) for a, b in pieces]
            for job in jobs:
                job.result()
        if mapped:
            release_pages(src)

    def _copy_piece(self, d: torch.Tensor, s: torch.Tensor, a: int, b: int,
                    ready: torch.cuda.Event | None) -> None:
        if d.device.type != "cuda":
            d[a:b].copy_(s[a:b])
            return
        if ready is None:
            raise RuntimeError("a copy to the GPU needs the caller stream's ready event")
        buf, stream = self._staging(d.device)
        m = b - a
        buf[:m].copy_(s[a:b])
        stream.wait_event(ready)
        with torch.cuda.stream(stream):
            d[a:b].copy_(buf[:m], non_blocking=True)
        stream.synchronize()  # the buffer is reused by this thread's next piece

    def _staging(self, device: torch.device) -> tuple[torch.Tensor, torch.cuda.Stream]:
        held = getattr(self._local, "staging", None)
        if held is None or held[1].device != device:
            buf = torch.empty(self.piece_bytes, dtype=torch.uint8, pin_memory=self.pin)
            held = (buf, torch.cuda.Stream(device=device))
            self._local.staging = held
        return held
