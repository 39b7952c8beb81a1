"""Flow-matching sampling of one chunk with CFG, resumable after every step.

After each step the latents (as float32) and the step index go to a state file
(atomic), so a killed chunk resumes from its last finished step and ends with
exactly the latents an uninterrupted run would have.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from engine.atomic import atomic_path
from engine.compat import import_diffsynth_module
from engine.kv_share import NEGATIVE, POSITIVE
from engine.models.dit import PoseGenDiT

StepCallback = Callable[[int, int, float], None]  # (steps done, steps total, seconds)


@dataclass
class ChunkInputs:
    """Everything the DiT sees of one chunk besides the noisy latents."""

    cond: torch.Tensor      # (1, 20, F, h, w): mask (4) + pose latents (16)
    hand: torch.Tensor      # (1, 16, F, h, w)
    ref: torch.Tensor       # (1, 16, 1, h, w)
    context_pos: torch.Tensor
    context_neg: torch.Tensor


def scheduler_for(steps: int, shift: float):
    flow_match = import_diffsynth_module("diffsynth.diffusion.flow_match")
    scheduler = flow_match.FlowMatchScheduler("Wan")
    scheduler.set_timesteps(steps, denoising_strength=1.0, shift=shift)
    return scheduler


def initial_noise(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """float32 noise drawn on the CPU, so every device starts from the same latents."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float32)


def load_state(path: Path, key: dict[str, Any]) -> tuple[int, torch.Tensor] | None:
    """(next step, latents) from a state file written for ``key``; None if absent/stale."""
    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if json.loads(meta.get("key", "null")) != key:
                return None
            return int(meta["next_step"]), f.get_tensor("latents")
    except Exception:  # a torn or foreign file: start the chunk over, never trust it
        return None


def saved_key(path: Path) -> dict[str, Any] | None:
    """The key a state file was written for; None if absent or unreadable."""
    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            key = json.loads((f.metadata() or {}).get("key", "null"))
    except Exception:  # a torn or foreign file
        return None
    return key if isinstance(key, dict) else None


def save_state(path: Path, key: dict[str, Any], next_step: int, latents: torch.Tensor) -> None:
    meta = {"key": json.dumps(key, sort_keys=True), "next_step": str(next_step)}
    with atomic_path(path) as tmp:
        save_file({"latents": latents.detach().float().cpu().contiguous()}, str(tmp),
                  metadata=meta)


def sample(dit: PoseGenDiT, inputs: ChunkInputs, *, seed: int, steps: int, cfg_scale: float,
           shift: float, device: torch.device | str, hook=None, state_path: Path | None = None,
           state_key: dict[str, Any] | None = None, on_step: StepCallback | None = None,
           should_stop: Callable[[], bool] | None = None,
           dtype: torch.dtype | None = None) -> torch.Tensor | None:
    """Denoise one chunk; returns the latents, or None if stopped at a step boundary.

    The release's arithmetic (ENGINE-SPEC section 10): the float32 CPU noise is cast to
    the compute ``dtype`` (default: the DiT's), the latents stay in it between steps,
    each timestep is cast to it before the time embedding (in bf16, 991.735 becomes
    992), and the CFG mix and the scheduler step run in it. With ``cfg_scale`` 1 the
    negative pass is skipped, as the release does.
    """
    import time

    dtype = dtype or dit.patch_embedding.weight.dtype
    shape = (1, 16, *inputs.cond.shape[2:])
    scheduler = scheduler_for(steps, shift)
    key = state_key or {}
    resumed = load_state(state_path, key) if state_path else None
    start, latents = resumed if resumed else (0, initial_noise(seed, shape))
    # A state file holds the latents in float32, which every compute dtype casts back
    # to exactly, so a resumed chunk continues from the very same values.
    latents = latents.to(device=device, dtype=dtype)
    # Cast once, on the device: no host copy inside the step loop.
    timesteps = scheduler.timesteps.to(device=device, dtype=dtype)
    guided = cfg_scale != 1.0
    try:
        for step in range(start, steps):
            if should_stop is not None and should_stop():
                return None
            t0 = time.perf_counter()
            timestep = timesteps[step].reshape(1)
            with torch.no_grad():
                if hook is not None:
                    hook.begin(step, POSITIVE)
                flow = dit(latents, inputs.cond, inputs.hand, inputs.ref, inputs.context_pos,
                           timestep, hook).to(dtype)
                if guided:
                    if hook is not None:
                        hook.begin(step, NEGATIVE)
                    neg = dit(latents, inputs.cond, inputs.hand, inputs.ref, inputs.context_neg,
                              timestep, hook).to(dtype)
                    flow = neg + cfg_scale * (flow - neg)
                latents = scheduler.step(flow, scheduler.timesteps[step], latents)
            save = _saver(state_path, key, step + 1)
            if hook is not None:
                hook.end_step(save, latents)  # the anchor saves once its cache is on disk
            else:
                save(latents)
            if on_step is not None:
                on_step(step + 1, steps, time.perf_counter() - t0)
    finally:
        if hook is not None:
            hook.drain()  # every step handed to the hook is saved before this returns
    return latents


def _saver(path: Path | None, key: dict[str, Any], next_step: int
           ) -> Callable[[torch.Tensor], None]:
    """Saves the state after a step (nothing without a state file)."""
    if path is None:
        return lambda latents: None
    return lambda latents: save_state(path, key, next_step, latents)
