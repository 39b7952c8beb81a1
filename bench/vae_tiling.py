"""Wan2.1 VAE tiling benchmark: the release's tiled encode/decode against engine.vae_tiling.

Run on a CUDA machine from the repository root (diffsynth importable, e.g. the carried
wheels installed into /tmp/site as bench/dit_step.sh does):

    python bench/vae_tiling.py --json $OUT/vae_tiling.json        # 1280x720x81, bf16
    python bench/vae_tiling.py --size 368x64 --frames 5 --dim 8 --device cpu \
        --json /tmp/vae_tiling.json                                 # code paths only

One random-weight Wan VAE (VideoVAE_(dim, z_dim=16), the engine's class), one random
video in [-1, 1]. Rows, each timed once after the warm-up (an untiled encode and
decode, and one batch-1 tiled pass with our code that touches every tile shape):
  - untiled encode / decode (diffsynth's single_encode / single_decode);
  - diffsynth's tiled encode / decode with the release's tiles (30, 52) / (15, 26): the
    reference every other row is compared with;
  - engine.vae_tiling.tiled_encode / tiled_decode for each --batches value;
  - optional variants of the --variant-batch row: cudnn.benchmark on, and the VAE's
    conv weights in channels_last(_3d). Measured, not assumed to keep the numbers.
Each row: seconds, peak memory allocated during the call (CUDA), max |difference| to
the reference, whether it is equal (torch.equal) and, for decodes, how many uint8 frame
values ((x + 1) * 127.5, clipped, truncated) differ. Decode rows all decode the
reference latents. JSON is rewritten after every row; a markdown table is printed last.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # diffsynth's per-tile progress bars

import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from engine.compat import configure_cuda_allocator, import_diffsynth_module  # noqa: E402

configure_cuda_allocator()  # as the engine's entry points do, before any CUDA use

from engine import vae_tiling as vt  # noqa: E402

GiB = 1 << 30


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", default="1280x720", help="HEIGHTxWIDTH in pixels (1280x720)")
    p.add_argument("--frames", type=int, default=81)
    p.add_argument("--dim", type=int, default=96, help="VAE width (96: the release's)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", choices=["bf16", "fp32"], default=None,
                   help="default: bf16 on CUDA (as the engine), fp32 on the CPU")
    p.add_argument("--batches", default="1,4,8,all",
                   help="max_batch values for our rows; 'all' = every tile of the grid")
    p.add_argument("--variant-batch", default="8",
                   help="max_batch of the cudnn.benchmark / channels_last rows ('' = none)")
    p.add_argument("--time-limit", type=float, default=240.0,
                   help="seconds after which the optional variant rows are skipped")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, required=True)
    return p.parse_args(argv)


def build_vae(dim: int, device: torch.device, dtype: torch.dtype, seed: int) -> Any:
    """A WanVideoVAE whose inner VideoVAE_ has random weights of width ``dim``."""
    vae_mod = import_diffsynth_module("diffsynth.models.wan_video_vae")
    skip_init = import_diffsynth_module("diffsynth.core.vram.initialization")
    with skip_init.skip_model_initialization():
        vae = vae_mod.WanVideoVAE(z_dim=16)  # its own VideoVAE_ is replaced below
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae.model = vae_mod.VideoVAE_(dim=dim, z_dim=16)
    return vae.to(device=device, dtype=dtype).eval().requires_grad_(False)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Tensor], device: torch.device) -> tuple[Tensor, float, int | None]:
    """Result, seconds (CUDA events on CUDA) and peak bytes allocated above the start."""
    if device.type != "cuda":
        start = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - start, None
    sync(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    out = fn()
    end.record()
    sync(device)
    return out, begin.elapsed_time(end) / 1000, torch.cuda.max_memory_allocated(device) - base


def uint8_frames(x: Tensor) -> Tensor:
    return ((x.float() + 1) * 127.5).clamp(0, 255).to(torch.uint8)


def compare(out: Tensor, ref: Tensor, decoded: bool) -> dict[str, Any]:
    """Differences to the reference, frame by frame (no full-size float32 copies)."""
    out = out.reshape(ref.shape)
    max_diff, differ, equal = 0.0, 0, True
    for i in range(ref.shape[2]):
        a, b = out[:, :, i].to(ref.device), ref[:, :, i]
        max_diff = max(max_diff, (a.float() - b.float()).abs().max().item())
        equal = equal and torch.equal(a, b)
        if decoded:
            differ += int((uint8_frames(a) != uint8_frames(b)).sum())
    row: dict[str, Any] = {"max_abs_diff": max_diff, "equal": equal}
    if decoded:
        row["uint8_differ"] = differ
        row["values"] = ref.numel()
    return row


@contextlib.contextmanager
def cudnn_benchmark(on: bool) -> Iterator[None]:
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = on
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


@contextlib.contextmanager
def channels_last(model: nn.Module) -> Iterator[None]:
    """Conv weights in channels_last(_3d) for the duration; the originals restored after.

    Module.to(memory_format=channels_last_3d) fails on the VAE's 4-D Conv2d weights,
    so each convolution's weight is converted by its rank.
    """
    saved = []
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            fmt = torch.channels_last_3d if m.weight.ndim == 5 else torch.channels_last
            saved.append((m, m.weight.data))
            m.weight.data = m.weight.data.contiguous(memory_format=fmt)
    try:
        yield
    finally:
        for m, w in saved:
            m.weight.data = w


def markdown(result: dict[str, Any]) -> str:
    lines = [f"## vae_tiling {result['setup']['size']} x {result['setup']['frames']} frames, "
             f"dim {result['setup']['dim']}, {result['setup']['dtype']} on "
             f"{result['setup']['device_name']}",
             "", "| row | s | peak GiB | max abs diff | equal | uint8 differ |",
             "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        peak = "" if r.get("peak_bytes") is None else f"{r['peak_bytes'] / GiB:.2f}"
        diff = "" if r.get("max_abs_diff") is None else f"{r['max_abs_diff']:.3g}"
        differ = "" if r.get("uint8_differ") is None else \
            f"{r['uint8_differ']} / {r['values']}"
        lines.append(f"| {r['name']} | {r['seconds']:.3f} | {peak} | {diff} | "
                     f"{r.get('equal', '')} | {differ} |")
    skipped = result.get("skipped")
    if skipped:
        lines.append(f"\nskipped: {', '.join(skipped)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[
        args.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    height, width = (int(v) for v in args.size.lower().split("x"))
    tile, stride = vt.RELEASE_TILE, vt.RELEASE_STRIDE
    grid = vt.tile_grid((height // 8, width // 8), tile, stride)
    n_tiles = len(grid)
    batches = [n_tiles if b.strip() == "all" else int(b) for b in args.batches.split(",")]
    names = {n_tiles: "all"}

    vae = build_vae(args.dim, device, dtype, args.seed)
    g = torch.Generator().manual_seed(args.seed)
    video = (torch.rand(1, 3, args.frames, height, width, generator=g) * 2 - 1).to(dtype)
    result: dict[str, Any] = {
        "setup": dict(size=f"{height}x{width}", frames=args.frames, dim=args.dim,
                      dtype=str(dtype).removeprefix("torch."), device=str(device),
                      device_name=torch.cuda.get_device_name(device)
                      if device.type == "cuda" else platform.processor() or "cpu",
                      torch=torch.__version__, tiles=n_tiles, tile=tile, stride=stride,
                      shape_groups=[len(b) for b in vt.batch_plan(grid, n_tiles)],
                      cudnn_benchmark_default=torch.backends.cudnn.benchmark),
        "rows": [], "skipped": []}

    def save() -> None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))

    def row(name: str, fn: Callable[[], Tensor], ref: Tensor | None,
            decoded: bool) -> Tensor:
        out, seconds, peak = timed(fn, device)
        r: dict[str, Any] = {"name": name, "seconds": seconds, "peak_bytes": peak}
        if ref is not None:
            r.update(compare(out, ref, decoded))
        result["rows"].append(r)
        save()
        print(f"{name}: {seconds:.3f} s" + ("" if peak is None else f", peak {peak / GiB:.2f} "
              "GiB") + (f", max|d| {r['max_abs_diff']:.3g}" if ref is not None else ""),
              flush=True)
        return out

    with torch.no_grad():
        # Warm-up: CUDA context, cuDNN handles, kernels of every tile shape.
        untiled_lat = vae.single_encode(video, device)
        vae.single_decode(untiled_lat, device)
        warm_lat = vt.tiled_encode(vae, video, device, max_batch=1)
        vt.tiled_decode(vae, warm_lat, device, max_batch=1)
        del warm_lat, untiled_lat
        sync(device)
        result["setup"]["warmup_s"] = time.perf_counter() - t_start
        if device.type == "cuda":
            free, total = torch.cuda.mem_get_info(device)
            result["setup"].update(gpu_free_bytes=free, gpu_total_bytes=total,
                                   weights_bytes=torch.cuda.memory_allocated(device))
        save()

        release = dict(tiled=True, tile_size=tile, tile_stride=stride)
        ref_lat = row("diffsynth tiled encode",  # on the CPU, (1, 16, T, h, w)
                      lambda: vae.encode([video[0]], device, **release), None, False)
        result["rows"][-1].update(max_abs_diff=0.0, equal=True)  # the reference itself
        row("untiled encode", lambda: vae.single_encode(video, device), ref_lat, False)
        lat_dev = ref_lat.to(device)
        ref_video = row("diffsynth tiled decode",
                        lambda: vae.decode([lat_dev[0]], device, **release), None, True)
        result["rows"][-1].update(max_abs_diff=0.0, equal=True, uint8_differ=0,
                                  values=ref_video.numel())
        row("untiled decode", lambda: vae.single_decode(lat_dev, device), ref_video, True)
        sample = ref_video[:, :, ::8].float()  # are the random weights' frames spread out?
        result["setup"]["ref_video_std"] = sample.std().item()
        result["setup"]["ref_video_saturated"] = (sample.abs() >= 1).float().mean().item()
        del sample
        for b in batches:
            label = names.get(b, str(b))
            row(f"ours encode max_batch={label}",
                lambda b=b: vt.tiled_encode(vae, video, device, max_batch=b), ref_lat, False)
            row(f"ours decode max_batch={label}",
                lambda b=b: vt.tiled_decode(vae, lat_dev, device, max_batch=b), ref_video,
                True)
        result["setup"]["default_max_batch"] = vt.default_max_batch(device)

        variant_batch = args.variant_batch.strip()
        if variant_batch and device.type == "cuda":
            b = n_tiles if variant_batch == "all" else int(variant_batch)
            variants: list[tuple[str, Callable[[], contextlib.AbstractContextManager]]] = [
                ("cudnn.benchmark", lambda: cudnn_benchmark(True)),
                ("channels_last", lambda: channels_last(vae.model))]
            for vname, ctx in variants:
                if time.perf_counter() - t_start > args.time_limit:
                    result["skipped"].append(f"{vname} (time limit)")
                    save()
                    continue
                try:
                    with ctx():
                        # One untimed pass first: cudnn.benchmark tunes each new shape.
                        vt.tiled_decode(vae, lat_dev, device, max_batch=b)
                        vt.tiled_encode(vae, video, device, max_batch=b)
                        row(f"ours encode max_batch={b} {vname}",
                            lambda: vt.tiled_encode(vae, video, device, max_batch=b),
                            ref_lat, False)
                        row(f"ours decode max_batch={b} {vname}",
                            lambda: vt.tiled_decode(vae, lat_dev, device, max_batch=b),
                            ref_video, True)
                except Exception as exc:  # a variant failing must not lose the table
                    result["skipped"].append(f"{vname} ({type(exc).__name__}: {exc})")
                    save()
    result["setup"]["total_s"] = time.perf_counter() - t_start
    save()
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
