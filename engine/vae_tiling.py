"""The release's tiled Wan VAE encode/decode, with tiles batched on the compute device.

The PoseGen release encodes the condition clips and decodes the final latents through
diffsynth's ``WanVideoVAE.tiled_encode`` / ``tiled_decode`` (tile (30, 52), stride
(15, 26), latent units). Those run one tile at a time, copy each tile's output to the
CPU and blend it there. Here tiles of one shape go through the VAE together (stacked on
the batch dimension) and are blended on the compute device, with the same arithmetic:

- the same grid and masks (``vae.build_mask``: built in float32, cast to the input dtype);
- per output element the same sequence of ``values += out * mask`` / ``weight += mask``
  in the input's dtype, then ``values / weight`` (and ``clamp_(-1, 1)`` for decode).
  Elementwise bf16/float32 ops round the same on CPU and GPU.

Float addition is not associative, so where up to four tiles overlap the order of the
adds matters. A tile is blended only after every earlier (diffsynth task order) tile
that overlaps it; outputs that come early wait. That gives each element the exact add
sequence of diffsynth's loop while tiles run grouped by shape.

Shapes follow diffsynth's ``tiled_encode`` / ``tiled_decode``: 5-D tensors with batch 1,
(1, 3, F, H, W) <-> (1, 16, (F + 3) // 4, H / 8, W / 8). The result is on ``device``.
``tile`` and ``stride`` are in latent units for both directions, as in
``WanVideoVAE.encode(..., tiled=True)`` / ``decode``; encode multiplies them by 8.

With ``max_batch=1`` the result equals diffsynth's bit for bit. With bigger batches
each tile's VAE output may differ by float noise where the convolution kernels chosen
for a batch differ from those for one tile; bench/vae_tiling.py measures it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

Tile = tuple[int, int, int, int]  # (h0, h1, w0, w1), h1/w1 clipped to the size

RELEASE_TILE = (30, 52)  # latent units; x8 in pixels
RELEASE_STRIDE = (15, 26)

# Tiles per VAE call on CUDA. The release's 1280x720 grid has 30 tiles in 4 shapes
# (18 + 9 + 2 + 1); batches of 8 take 7 calls instead of 30, cutting the per-call Python
# and launch overhead of the VAE's frame-by-frame causal loops. The tiles' overlap (2.9x
# the frame's pixels at 1280x720) is part of the release's numbers and stays. Measured
# on an H200 (docs/benchmarks.md): 8 tiles per call peak at 6.9 GiB (encode) and 8.9 GiB
# (decode), 23 % faster per chunk than one tile at a time; bigger batches gain ~1 %.
DEFAULT_CUDA_MAX_BATCH = 8


def tile_grid(size: tuple[int, int], tile: tuple[int, int],
              stride: tuple[int, int]) -> list[Tile]:
    """diffsynth's task list for an (H, W) plane, in its order (row-major).

    A start ``h`` (every ``stride_h`` from 0) is skipped when the tile one stride
    earlier already reaches the end (``h - stride_h + tile_h >= H``); same for ``w``.
    Edge tiles are clipped to the plane. All in the unit of the tensor being tiled.
    """
    (height, width), (tile_h, tile_w), (stride_h, stride_w) = size, tile, stride
    if min(tile_h, tile_w, stride_h, stride_w) <= 0 or min(height, width) <= 0:
        raise ValueError(f"size {size}, tile {tile} and stride {stride} must be positive")
    tasks = []
    for h in range(0, height, stride_h):
        if h - stride_h >= 0 and h - stride_h + tile_h >= height:
            continue
        for w in range(0, width, stride_w):
            if w - stride_w >= 0 and w - stride_w + tile_w >= width:
                continue
            tasks.append((h, min(h + tile_h, height), w, min(w + tile_w, width)))
    return tasks


def _overlap(a: Tile, b: Tile) -> bool:
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def batch_plan(tiles: list[Tile], max_batch: int) -> list[list[int]]:
    """Tile indices per VAE call: one shape per call, at most ``max_batch`` tiles.

    Greedy in task order: each call takes the shape of the earliest tile not yet run
    and the earliest tiles of that shape, so outputs wait for their turn to blend
    only briefly (at most about two calls' outputs are held at once).
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    shapes = [(h1 - h0, w1 - w0) for h0, h1, w0, w1 in tiles]
    todo = list(range(len(tiles)))
    plan = []
    while todo:
        shape = shapes[todo[0]]
        batch = [i for i in todo if shapes[i] == shape][:max_batch]
        plan.append(batch)
        taken = set(batch)
        todo = [i for i in todo if i not in taken]
    return plan


def default_max_batch(device: torch.device) -> int:
    """Tiles per VAE call: 1 off CUDA, else ``DEFAULT_CUDA_MAX_BATCH``.

    A fixed number, not one sized to the free memory: the kernels a batch picks decide
    the last bits of the result, so the same chunk must batch the same way every time
    for two runs to give the same frames. On the CPU a batch is no faster (the
    convolutions already use every core) and one tile per call equals diffsynth bit for
    bit. Out of memory, a batched call is retried one tile at a time (``_run_tiled``).
    """
    return 1 if device.type != "cuda" else DEFAULT_CUDA_MAX_BATCH


def _check_5d(x: Tensor, channels: int, what: str) -> None:
    if x.ndim != 5 or x.shape[0] != 1 or x.shape[1] != channels:
        raise ValueError(f"expected {what} (1, {channels}, T, H, W), got {tuple(x.shape)}")


def _run_tiled(vae: Any, x: Tensor, device: torch.device, tiles: list[Tile],
               run: Callable[[Tensor], Tensor], out_shape: tuple[int, ...],
               to_out: Callable[[int], int], border: tuple[int, int],
               max_batch: int) -> Tensor:
    """``_blend_tiles``, retried one tile at a time if a batch does not fit the GPU."""
    try:
        return _blend_tiles(vae, x, device, tiles, run, out_shape, to_out, border, max_batch)
    except torch.cuda.OutOfMemoryError:
        if max_batch == 1:
            raise
    torch.cuda.empty_cache()
    return _blend_tiles(vae, x, device, tiles, run, out_shape, to_out, border, 1)


def _blend_tiles(vae: Any, x: Tensor, device: torch.device, tiles: list[Tile],
                 run: Callable[[Tensor], Tensor], out_shape: tuple[int, ...],
                 to_out: Callable[[int], int], border: tuple[int, int],
                 max_batch: int) -> Tensor:
    """Run ``tiles`` of ``x`` through ``run`` in batches and blend them in task order."""
    height, width = x.shape[-2:]
    dtype = x.dtype
    values = torch.zeros(out_shape, dtype=dtype, device=device)
    weight = torch.zeros((1, 1, *out_shape[2:]), dtype=dtype, device=device)
    # Earlier tasks overlapping each task: the adds it must come after.
    after = [[i for i in range(j) if _overlap(tiles[i], tiles[j])] for j in range(len(tiles))]
    held: dict[int, Tensor] = {}  # computed, not yet blended
    blended = [False] * len(tiles)

    def blend(j: int, out: Tensor) -> None:
        h0, h1, w0, w1 = tiles[j]
        mask = vae.build_mask(out, is_bound=(h0 == 0, h1 >= height, w0 == 0, w1 >= width),
                              border_width=border).to(dtype=dtype, device=device)
        th, tw = to_out(h0), to_out(w0)
        region = (slice(None), slice(None), slice(None),
                  slice(th, th + out.shape[3]), slice(tw, tw + out.shape[4]))
        values[region] += out * mask
        weight[region] += mask

    for batch in batch_plan(tiles, max_batch):
        inputs = torch.cat([x[:, :, :, h0:h1, w0:w1] for h0, h1, w0, w1 in
                            (tiles[j] for j in batch)])
        outputs = run(inputs)
        del inputs
        held.update({j: outputs[k:k + 1] for k, j in enumerate(batch)})
        del outputs  # the held views keep it alive until the last one is blended
        # Dependencies point to earlier tasks only, so one ascending pass finds all.
        for j in sorted(held):
            if all(blended[i] for i in after[j]):
                blend(j, held.pop(j))
                blended[j] = True
    assert not held and all(blended)
    # In place: the same rounding as diffsynth's ``values / weight``, one tensor less.
    values.div_(weight)
    return values


@torch.no_grad()
def tiled_encode(vae: Any, video: Tensor, device: str | torch.device,
                 tile: tuple[int, int] = RELEASE_TILE,
                 stride: tuple[int, int] = RELEASE_STRIDE,
                 max_batch: int | None = None) -> Tensor:
    """(1, 3, F, H, W) -> latents (1, 16, (F + 3) // 4, H / 8, W / 8) on ``device``.

    Equals ``vae.encode([video[0]], device, tiled=True, tile_size=tile,
    tile_stride=stride)`` (tile and stride in latent units). ``max_batch=None``:
    ``default_max_batch``. ``video`` must have the VAE's dtype, as for diffsynth.
    """
    _check_5d(video, 3, "a video")
    up = vae.upsampling_factor
    _, _, frames, height, width = video.shape
    if height % up or width % up:
        raise ValueError(f"video of {height}x{width}: height and width must be divisible "
                         f"by {up}")
    device = torch.device(device)
    size_h, size_w = tile[0] * up, tile[1] * up  # pixels, as WanVideoVAE.encode passes
    stride_h, stride_w = stride[0] * up, stride[1] * up
    tiles = tile_grid((height, width), (size_h, size_w), (stride_h, stride_w))
    if max_batch is None:
        max_batch = default_max_batch(device)
    out_shape = (1, vae.z_dim, (frames + 3) // 4, height // up, width // up)
    return _run_tiled(
        vae, video.to(device), device, tiles,
        run=lambda x: vae.model.encode(x, vae.scale), out_shape=out_shape,
        to_out=lambda p: p // up,
        border=((size_h - stride_h) // up, (size_w - stride_w) // up),
        max_batch=max_batch)


@torch.no_grad()
def tiled_decode(vae: Any, latents: Tensor, device: str | torch.device,
                 tile: tuple[int, int] = RELEASE_TILE,
                 stride: tuple[int, int] = RELEASE_STRIDE,
                 max_batch: int | None = None) -> Tensor:
    """Latents (1, 16, T, h, w) -> video (1, 3, 4T - 3, 8h, 8w) in [-1, 1] on ``device``.

    Equals ``vae.decode([latents[0]], device, tiled=True, tile_size=tile,
    tile_stride=stride)``. ``max_batch=None``: ``default_max_batch``.
    """
    _check_5d(latents, vae.z_dim, "latents")
    up = vae.upsampling_factor
    _, _, frames, height, width = latents.shape
    device = torch.device(device)
    tiles = tile_grid((height, width), tile, stride)
    if max_batch is None:
        max_batch = default_max_batch(device)
    out_shape = (1, 3, frames * 4 - 3, height * up, width * up)
    video = _run_tiled(
        vae, latents.to(device), device, tiles,
        run=lambda z: vae.model.decode(z, vae.scale), out_shape=out_shape,
        to_out=lambda p: p * up,
        border=((tile[0] - stride[0]) * up, (tile[1] - stride[1]) * up),
        max_batch=max_batch)
    return video.clamp_(-1, 1)
