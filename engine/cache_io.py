"""Anchor-cache I/O that overlaps the DiT's compute.

Writing (anchor chunk): the tensor is copied to pinned host memory on a side CUDA
stream, and a background thread writes the file once that copy is done; the
compute stream never waits for the disk. The sampler hands the step's latents to
`after()`: the thread saves them only once that step's cache files are written, so
a resumed anchor never skips a step whose cache files were lost, and the next
step computes while the disk catches up. `flush()` waits for everything pending.

Reading (base chunks): at the start of a forward that shares, a background thread
reads that forward's files, in block order, into pinned host memory. The share
blocks are the last ones (34..39 by default), so the ~10 s of earlier blocks hide
the disk. The host-to-device copy of block b's tensor runs on a side stream while
the block before it computes.

On the CPU both degrade to plain synchronous code paths with the same results.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

from engine.tensor_file import read_tensor, write_tensor_file

Action = Callable[[torch.Tensor], None]
Item = tuple[Action, torch.Tensor, "torch.cuda.Event | None"]


class AsyncTensorWriter:
    """Writes tensors to files from a background thread, in submission order."""

    def __init__(self, max_pending: int = 8) -> None:
        self._queue: queue.Queue[Item | None] = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._streams: dict[torch.device, torch.cuda.Stream] = {}
        self.bytes_written = 0

    def submit(self, path: Path, name: str, tensor: torch.Tensor) -> None:
        """Write ``tensor`` to ``path`` (as ``name``) after everything submitted before."""

        def write(host: torch.Tensor) -> None:
            write_tensor_file(path, {name: host})
            self.bytes_written += host.numel() * host.element_size()

        self._enqueue(write, tensor)

    def after(self, action: Action, tensor: torch.Tensor) -> None:
        """Call ``action`` with a host copy of ``tensor`` once everything submitted before
        is written; never if one of those writes failed (``flush`` raises that error)."""
        self._enqueue(action, tensor)

    def _enqueue(self, action: Action, tensor: torch.Tensor) -> None:
        self._raise_pending()
        event = None
        t = tensor.detach()
        if t.device.type == "cuda":
            stream = self._stream(t.device)
            host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
            stream.wait_stream(torch.cuda.current_stream(t.device))
            with torch.cuda.stream(stream):
                host.copy_(t, non_blocking=True)
                event = torch.cuda.Event()
                event.record(stream)
            t.record_stream(stream)  # keep the source alive until the copy is done
            t = host
        else:
            t = t.contiguous().clone()  # the caller may reuse its tensor
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="cache-writer", daemon=True)
            self._thread.start()
        self._queue.put((action, t, event))

    def flush(self) -> None:
        """Wait until every submitted tensor is on disk; re-raise a write error."""
        if self._thread is not None:
            self._queue.join()
        self._raise_pending()

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        self._raise_pending()

    def _stream(self, device: torch.device) -> torch.cuda.Stream:
        if device not in self._streams:
            self._streams[device] = torch.cuda.Stream(device)
        return self._streams[device]

    def _raise_pending(self) -> None:
        if self._error is not None:
            e, self._error = self._error, None
            raise e

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                action, t, event = item
                if self._error is None:  # after a failure, drop the rest: flush() raises
                    if event is not None:
                        event.synchronize()
                    action(t)
            except BaseException as e:  # noqa: BLE001 - handed to the compute thread
                self._error = e
            finally:
                self._queue.task_done()


class BlockPrefetcher:
    """Reads one forward's cached tensors ahead of the blocks that use them."""

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self._cuda = self.device.type == "cuda"
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-reader")
        self._host: dict[int, Future[torch.Tensor]] = {}
        self._order: list[int] = []
        self._on_device: dict[int, tuple[torch.Tensor, torch.cuda.Event | None]] = {}
        self._stream = torch.cuda.Stream(self.device) if self._cuda else None
        self.bytes_read = 0

    def start(self, blocks: Sequence[int], path_of: Callable[[int], Path], name: str) -> None:
        """Begin reading ``name`` from ``path_of(block)`` for each block, in order."""
        self.reset()
        self._order = list(blocks)
        for b in self._order:
            self._host[b] = self._pool.submit(read_tensor, path_of(b), name, None, self._cuda)

    def get(self, block: int) -> torch.Tensor:
        """The tensor for ``block`` on the device (raises what its read raised)."""
        if block not in self._on_device:
            self._copy(block)
        t, event = self._on_device.pop(block)
        if event is not None:
            torch.cuda.current_stream(self.device).wait_event(event)
            t.record_stream(torch.cuda.current_stream(self.device))
        nxt = self._next_after(block)
        if nxt is not None and self._cuda and self._host[nxt].done():
            self._copy(nxt)  # overlaps this block's compute
        return t

    def reset(self) -> None:
        for f in self._host.values():
            f.cancel()
        self._host, self._order, self._on_device = {}, [], {}

    def close(self) -> None:
        self.reset()
        self._pool.shutdown(wait=True)

    def _next_after(self, block: int) -> int | None:
        later = [b for b in self._order if b > block and b not in self._on_device]
        return later[0] if later else None

    def _copy(self, block: int) -> None:
        host = self._host.pop(block).result()
        self.bytes_read += host.numel() * host.element_size()
        if not self._cuda:
            self._on_device[block] = (host, None)
            return
        assert self._stream is not None
        with torch.cuda.stream(self._stream):
            dev = host.to(self.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self._stream)
        self._on_device[block] = (dev, event)
