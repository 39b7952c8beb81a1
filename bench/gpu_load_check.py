"""The GPU loading paths against the CPU ones, on a small checkpoint (seconds, not minutes).

    python bench/gpu_load_check.py --ckpt DIR [--device cuda]

Loads the base DiT through ``ModelSet`` on the GPU under ``-p none``, ``-p 0`` and a
budget in between, and the umT5, CLIP and VAE files, and compares every tensor with a
CPU load in the same dtype: plain weights must be equal; LoRA-merged weights (merged on
the GPU) are counted where they differ, in bf16 units in the last place. Resident
weights must be on the GPU and streamed ones in pinned host memory. Prints one JSON line
and exits 1 on a failed check: run it before spending device time on full-size loads.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from engine.checkpoint import encoders  # noqa: E402
from engine.checkpoint.dit_loader import LORA_A, read_shards  # noqa: E402
from engine.checkpoint.layout import CheckpointLayout  # noqa: E402
from engine.checkpoint.staging import ParallelCopy  # noqa: E402
from engine.model_set import ModelSet  # noqa: E402


def ulps(a: torch.Tensor, b: torch.Tensor) -> int:
    if a.dtype != torch.bfloat16:
        return 0 if torch.equal(a, b) else 1 << 30
    d = a.view(torch.int16).to(torch.int32) - b.view(torch.int16).to(torch.int32)
    return int(d.abs().max()) if d.numel() else 0


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    # diffsynth's wrappers nest plain modules as ``.module.``: compare by the file's names.
    return {k.replace(".module.", "."): v for k, v in module.state_dict().items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", type=Path, required=True)
    p.add_argument("--device", default="cuda")
    args = p.parse_args()
    layout = CheckpointLayout(args.ckpt)
    dtype = torch.bfloat16
    failures: list[str] = []
    report: dict[str, object] = {"device": torch.cuda.get_device_name()
                                 if torch.cuda.is_available() else "cpu"}

    raw = read_shards(layout.dit_dir("base"))
    merged = {k.removeprefix("pipe.dit.")[: -len(LORA_A)] + ".weight"
              for k in raw if k.endswith(LORA_A)}
    cpu = state(ModelSet(layout, "cpu", dtype, None).dit("base"))
    total = sum(v.numel() for v in cpu.values())
    for label, budget in (("none", None), ("0", 0), ("half", total // 2)):
        models = ModelSet(layout, args.device, dtype, budget)
        gpu_model = models.dit("base")
        got = state(gpu_model)
        worst = differing = on_gpu = pinned = 0
        for name, want in cpu.items():
            t = got[name]
            if t.is_cuda:
                on_gpu += 1
            elif t.is_pinned():
                pinned += 1
            else:
                failures.append(f"-p {label}: {name} is in pageable host memory")
            u = ulps(t.cpu(), want)
            if u and name not in merged:
                failures.append(f"-p {label}: {name} differs from the CPU load ({u} ulp)")
            worst = max(worst, u)
            differing += int(u > 0)
        if budget is None and on_gpu != len(cpu):
            failures.append(f"-p none: {len(cpu) - on_gpu} tensors not on the GPU")
        if budget == 0 and not pinned:
            failures.append("-p 0: nothing streamed from pinned memory")
        report[f"p_{label}"] = {"on_gpu": on_gpu, "pinned": pinned,
                                "merged_layers_differing": differing,
                                "max_ulp_merged": worst, "placement": str(models.placement),
                                "load_seconds": {k: round(v, 3)
                                                 for k, v in models.load_seconds.items()}}
        models.release()

    for name, load, path in (("t5", encoders.load_text_encoder, layout.text_encoder),
                             ("clip", encoders.load_image_encoder, layout.image_encoder),
                             ("vae", encoders.load_vae, layout.vae)):
        a = state(load(path, device="cpu", dtype=dtype))
        b = state(load(path, device=args.device, dtype=dtype))
        bad = [k for k in a if not torch.equal(a[k], b[k].cpu())]
        if bad:
            failures.append(f"{name}: {len(bad)} tensors differ, e.g. {bad[0]}")
        report[name] = {"tensors": len(a), "differ": len(bad)}

    copier = ParallelCopy(piece_bytes=1 << 16)
    x = torch.randn(3001, 77).to(dtype)
    y = copier.to(x, args.device)
    copier.close()
    if not torch.equal(y.cpu(), x):
        failures.append("ParallelCopy to the GPU changed the bytes")
    report["failures"] = failures
    print(json.dumps(report))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
