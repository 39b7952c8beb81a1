"""Big single tensors to and from safetensors files, without extra copies.

The anchor cache moves ~0.8 GB tensors per file while the GPU computes, from a
background thread. `safetensors.torch.save_file` first copies a tensor into a
Python bytes object and `load_file` into a fresh tensor; both copies hold the GIL
and stall the thread that feeds the GPU. Here the payload goes straight between
the tensor's memory and the file (`write`/`readinto` release the GIL), and a
read can land in a caller's pinned buffer. The files are plain safetensors:
`safetensors.safe_open` reads what we write, and we read what it writes.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import torch

from engine.atomic import atomic_path

_DTYPES = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32",
           torch.float64: "F64", torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8",
           torch.bool: "BOOL"}
_TORCH = {v: k for k, v in _DTYPES.items()}


class TensorFileError(RuntimeError):
    pass


def _bytes_view(t: torch.Tensor) -> memoryview:
    flat = t.reshape(-1)
    if flat.numel() == 0:
        return memoryview(b"")
    return flat.view(torch.uint8).numpy().data


def write_tensor_file(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor],
                      metadata: dict[str, str] | None = None) -> None:
    """Write CPU ``tensors`` atomically as one safetensors file."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    items = []
    for name, t in tensors.items():
        if t.device.type != "cpu":
            raise TensorFileError(f"{name}: copy the tensor to the CPU before writing it")
        t = t.contiguous()
        n = t.numel() * t.element_size()
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + n]}
        items.append(t)
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format aligns the payload to 8 bytes
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for t in items:
            f.write(_bytes_view(t))


def read_header(f) -> tuple[dict, int]:
    (n,) = struct.unpack("<Q", f.read(8))
    if n > min(os.fstat(f.fileno()).st_size, 100 << 20):
        raise json.JSONDecodeError(f"header length {n} is impossible", "", 0)
    return json.loads(f.read(n)), 8 + n


def read_tensor(path: str | os.PathLike[str], name: str,
                out: torch.Tensor | None = None, pin: bool = False) -> torch.Tensor:
    """Read tensor ``name`` from ``path`` into ``out`` (or a new, optionally pinned, tensor)."""
    path = Path(path)
    with open(path, "rb") as f:
        try:
            header, base = read_header(f)
            entry = header[name]
        except (struct.error, json.JSONDecodeError, KeyError, UnicodeDecodeError) as e:
            raise TensorFileError(f"{path}: not a tensor file with {name!r} ({e}); delete it "
                                  "and generate it again") from None
        dtype, shape = _TORCH[entry["dtype"]], tuple(entry["shape"])
        start, end = entry["data_offsets"]
        if out is None:
            out = torch.empty(shape, dtype=dtype, pin_memory=pin)
        elif out.shape != shape or out.dtype != dtype or not out.is_contiguous():
            raise TensorFileError(f"{path}: {name} is {dtype} {shape}, the buffer is "
                                  f"{out.dtype} {tuple(out.shape)}")
        f.seek(base + start)
        view = _bytes_view(out)
        got = f.readinto(view) if end > start else 0
        if got != end - start:
            raise TensorFileError(f"{path}: truncated ({got} of {end - start} bytes of {name}); "
                                  "delete it and generate it again")
    return out
