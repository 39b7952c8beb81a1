"""The `-p` budget: how many DiT parameters stay resident on the GPU (spec section 7).

Parsing never evaluates user text. Placement uses diffsynth 2.x's VRAM layers:
leaf layers are wrapped, the first ones (in module order) up to the budget live
on the GPU, the rest live in CPU memory and are copied in at each forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from engine.errors import BudgetError  # noqa: F401  (re-exported)
from engine.settings import AUTO, Budget, parse_budget  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    from engine.models.dit import PoseGenDiT

# Activation memory of the DiT forward, in bytes per (token x model width), the
# largest over bare, anchor and KV-sharing base steps. Measured on an H100 at
# 1280x720x81 (79,200 tokens, width 5120) by bench/dit_step.py: 11.14 GB for a
# bare step (27.5) and 1.11 GB more for a base step's sharing blocks (30.2); see
# docs/benchmarks.md.
ACTIVATION_BYTES_PER_TOKEN_DIM = 30.5
# Kept free on top of the prediction: allocator slack, cuBLAS/cuDNN workspaces,
# the VAE and the chunk's conditions.
MARGIN_BYTES = 4 << 30
MARGIN_FRACTION = 0.05


@dataclass(frozen=True)
class Placement:
    resident_params: int
    streamed_params: int
    resident_layers: int
    streamed_layers: int


def _leaf_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    from engine.models.dit import RMSNorm

    kinds = (nn.Linear, nn.Conv3d, nn.LayerNorm, RMSNorm)
    return [(n, m) for n, m in model.named_modules() if isinstance(m, kinds)]


def _resident_layers(model: nn.Module, budget: int | None) -> set[str]:
    """The leaf layers kept on the device: a prefix in module order, while they fit."""
    layers = _leaf_layers(model)
    in_layers = {id(p) for _, m in layers for p in m.parameters()}
    used = sum(p.numel() for p in model.parameters() if id(p) not in in_layers)
    kept = set()
    for name, layer in layers:
        n = sum(p.numel() for p in layer.parameters())
        if budget is not None and used + n > budget:
            break  # early blocks stay, late ones stream
        used += n
        kept.add(name)
    return kept


def resident_parameters(model: nn.Module, budget: int | None) -> set[str]:
    """Names of the parameters ``apply_budget`` keeps on the device under ``budget``.

    Works on a model built on the meta device, so a loader can put each weight straight
    where it will live. Parameters outside the wrapped layers (modulation tables) are
    always resident and count towards the budget first.
    """
    layers = dict(_leaf_layers(model))
    kept = _resident_layers(model, budget)
    in_layers = {id(p) for m in layers.values() for p in m.parameters()}
    names = {n for n, p in model.named_parameters() if id(p) not in in_layers}
    for name in kept:
        names.update(f"{name}.{p}" for p, _ in layers[name].named_parameters())
    return names


def apply_budget(model: nn.Module, budget: int | None, device: torch.device | str,
                 dtype: torch.dtype, offload_device: torch.device | str = "cpu",
                 pin: bool = True) -> Placement:
    """Place ``model`` for computing on ``device`` with at most ``budget`` resident params.

    Parameters that are not inside a wrapped layer (modulation tables) are
    always resident and count towards the budget first. Streamed linear weights
    are pinned (page-locked) when ``pin``: diffsynth copies them in at every
    forward, and from pageable memory that copy ran at ~5 GB/s on an H100 host,
    from pinned memory several times faster (docs/benchmarks.md). Weights already
    where they belong (a loader that placed them) are not copied again.
    """
    from engine.compat import import_diffsynth_module

    vram = import_diffsynth_module("diffsynth.core.vram.layers")
    layers = _leaf_layers(model)
    layer_params = {id(p) for _, m in layers for p in m.parameters()}
    loose = [p for p in model.parameters() if id(p) not in layer_params]
    for p in loose:
        p.data = p.data.to(device=device, dtype=dtype)
    kept = _resident_layers(model, budget)

    resident = streamed = resident_layers = 0
    wrapped: dict[str, nn.Module] = {}
    to_pin: list[nn.Parameter] = []
    for name, layer in layers:
        n = sum(p.numel() for p in layer.parameters())
        keep = name in kept
        where = device if keep else offload_device
        config = dict(offload_dtype=dtype, offload_device=where, onload_dtype=dtype,
                      onload_device=where, preparing_dtype=dtype, preparing_device=where,
                      computation_dtype=dtype, computation_device=device)
        cls = vram.AutoWrappedLinear if isinstance(layer, nn.Linear) else vram.AutoWrappedModule
        w = cls(layer, **config, name=name)
        w.onload()
        if not keep and pin and isinstance(layer, nn.Linear) and torch.cuda.is_available():
            to_pin += [p for p in w.parameters() if not p.data.is_pinned()]
        wrapped[name] = w
        if keep:
            resident += n
            resident_layers += 1
        else:
            streamed += n
    pin_parameters(to_pin)
    for name, w in wrapped.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, w)
    return Placement(resident + sum(p.numel() for p in loose), streamed, resident_layers,
                     len(layers) - resident_layers)


def pin_parameters(params: list[nn.Parameter]) -> None:
    """Move ``params`` into page-locked host memory, packed (engine/pinned_arena.py)."""
    from engine.pinned_arena import PinnedArena

    arena = PinnedArena(sum(p.numel() * p.element_size() for p in params))
    for p in params:
        pinned = arena.take(p.shape, p.dtype)
        pinned.copy_(p.data)
        p.data = pinned  # the pageable copy is freed here, one weight at a time


def streamed_bytes(model: nn.Module, budget: int | None, dtype: torch.dtype) -> int:
    """Bytes of the parameters that stream (live on the host) under ``budget``."""
    keep = resident_parameters(model, budget)
    size = torch.empty((), dtype=dtype).element_size()
    return sum(p.numel() for n, p in model.named_parameters() if n not in keep) * size


# -- automatic budget ------------------------------------------------------------------------


def activation_bytes(dim: int, n_tokens: int) -> int:
    """Predicted activation peak of one DiT forward over ``n_tokens`` tokens."""
    return int(ACTIVATION_BYTES_PER_TOKEN_DIM * n_tokens * dim)


def margin_bytes(total_bytes: int) -> int:
    return max(MARGIN_BYTES, int(MARGIN_FRACTION * total_bytes))


def layer_sizes(model: nn.Module, dtype: torch.dtype) -> tuple[int, list[int]]:
    """(bytes of always-resident loose params, bytes of each leaf layer in module order)."""
    size = torch.empty((), dtype=dtype).element_size()
    layers = _leaf_layers(model)
    layer_params = {id(p) for _, m in layers for p in m.parameters()}
    loose = sum(p.numel() for p in model.parameters() if id(p) not in layer_params)
    return loose * size, [sum(p.numel() for p in m.parameters()) * size for _, m in layers]


def predicted_peak(loose: int, layers: list[int], resident_layers: int, act: int) -> int:
    """Peak bytes with the first ``resident_layers`` layers resident, the rest streamed.

    A streamed layer is on the GPU only while it computes; one at a time, plus the
    next one's copy in flight.
    """
    resident = loose + sum(layers[:resident_layers])
    streamed = sorted(layers[resident_layers:], reverse=True)[:2]
    return resident + sum(streamed) + act


def auto_budget(model: PoseGenDiT, dtype: torch.dtype, free_bytes: int, total_bytes: int,
                n_tokens: int) -> tuple[int | None, int]:
    """The largest budget whose predicted peak fits ``free_bytes`` less a margin.

    Returns (budget in parameters or None for everything, predicted peak bytes).
    """
    loose, layers = layer_sizes(model, dtype)
    act = activation_bytes(model.cfg.dim, n_tokens)
    room = free_bytes - margin_bytes(total_bytes)
    n = len(layers)
    while n > 0 and predicted_peak(loose, layers, n, act) > room:
        n -= 1
    peak = predicted_peak(loose, layers, n, act)
    if n == len(layers):
        return None, peak
    size = torch.empty((), dtype=dtype).element_size()
    return (loose + sum(layers[:n])) // size, peak


def fits_whole(model: PoseGenDiT, dtype: torch.dtype, free_bytes: int, total_bytes: int,
               n_tokens: int) -> bool:
    """Whether ``model`` fits entirely resident in ``free_bytes`` (``-p auto``'s rule)."""
    budget, _ = auto_budget(model, dtype, free_bytes, total_bytes, n_tokens)
    return budget is None

