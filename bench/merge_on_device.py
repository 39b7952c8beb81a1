"""LoRA merged on the GPU against the release's CPU merge, on a real-size DiT shard.

    python bench/merge_on_device.py --ckpt DIR [--layers 40] [--device cuda]

The loader merges each LoRA pair where the weight will live (the GPU), in the
checkpoint's dtype, with the release's formula ``w + alpha * (B @ A)``. The release runs
the same formula on the CPU. The two differ only in how a matmul accumulates; this
counts the bf16 elements that differ and by how many units in the last place, and times
both. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from engine.checkpoint.dit_loader import KEY_PREFIX, LORA_A, LORA_B, merge_pair  # noqa: E402
from engine.checkpoint.mapped import open_mapped  # noqa: E402


def ulps(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance in bf16 units in the last place (meaningful where the signs agree)."""
    ia = a.view(torch.int16).to(torch.int32)
    ib = b.view(torch.int16).to(torch.int32)
    return (ia - ib).abs()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", type=Path, required=True)
    p.add_argument("--layers", type=int, default=40)
    p.add_argument("--device", default="cuda")
    args = p.parse_args()
    shards = sorted((args.ckpt / "720p-81f-base").glob("*.bin"))
    layers = differ = elements = max_ulp = 0
    max_abs = scale = 0.0
    cpu_s = dev_s = 0.0
    for shard in shards:
        sd, _ = open_mapped(shard)
        for key in [k for k in sd if k.endswith(".base_layer.weight")]:
            layer = key[: -len(".base_layer.weight")]
            a, b = sd.get(f"{layer}{LORA_A}"), sd.get(f"{layer}{LORA_B}")
            if a is None or b is None:
                continue
            w = sd[key]
            t0 = time.perf_counter()
            on_cpu = merge_pair(w, a, b)
            t1 = time.perf_counter()
            wd = w.to(args.device)
            torch.cuda.synchronize()
            t2 = time.perf_counter()
            on_dev = merge_pair(wd, a.to(args.device), b.to(args.device))
            torch.cuda.synchronize()
            t3 = time.perf_counter()
            cpu_s += t1 - t0
            dev_s += t3 - t2
            got = on_dev.cpu()
            d = ulps(got, on_cpu)
            differ += int((d > 0).sum())
            max_ulp = max(max_ulp, int(d[(got.sign() == on_cpu.sign()) & (on_cpu != 0)].max()))
            diff = (got.float() - on_cpu.float()).abs()
            max_abs = max(max_abs, float(diff.max()))
            scale = max(scale, float(on_cpu.float().abs().max()))
            elements += w.numel()
            layers += 1
            if layers >= args.layers:
                break
        if layers >= args.layers:
            break
    print(json.dumps({"layers": layers, "elements": elements, "differing": differ,
                      "differing_fraction": differ / max(elements, 1), "max_ulp_same_sign": max_ulp,
                      "max_abs_diff": max_abs, "max_abs_weight": scale,
                      "cpu_merge_s": round(cpu_s, 2), "device_merge_s": round(dev_s, 3),
                      "dtype": str(w.dtype), "key_prefix": KEY_PREFIX,
                      "device": torch.cuda.get_device_name() if torch.cuda.is_available()
                      else "cpu"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
