"""DiT sampling-step benchmark at the release's real shapes, on random weights.

Run on a CUDA machine from the repository root (see bench/dit_step.sh, which
installs the carried wheels first):

    python bench/dit_step.py --out $OUT            # Wan2.1-14B + PoseGen, 1280x720x81
    python bench/dit_step.py --out /tmp/b --preset tiny --device cpu   # code paths only

Compiled DiT blocks (issue #16), eager and compiled rows in one process, on the device:

    bash bench/dit_step.sh --compile --time-limit 560
    python bench/dit_step.py --out /tmp/b --preset tiny --device cpu --compile  # smoke test

In one process, on one model (random bf16 weights, the engine's own classes and
placement), it measures:
  1. seconds per sampling step (CFG: both passes, through engine.sampler.sample) for
     a bare step, an anchor step (recording the cache) and a base step (sharing
     the anchor's K/V), and the release's formulation of the base step (dense mask
     built on the CPU, K/V and cross-attention q/k saved with torch.save and read
     with torch.load), written here for comparison only;
  2. anchor-cache bytes at the default settings, ours (measured) and the release's
     (computed from shapes; its q/k files are too big for this machine's disk);
  3. the SDPA backends on the 79,200-token self-attention: time and error against a
     float32 reference (on sampled query rows);
  4. peak VRAM and seconds per step for -p budgets, with -p auto's predicted peak
     next to the measured one.
With --compile, sections 1 (without the release's formulation), 3 and 5 run, and 4 is
skipped (its streamed placements run eager anyway):
  5. compiled DiT blocks (engine/compiler.py): the first compile in this process into
     an empty compiler cache, the second call, a new process compiling from the warm
     cache (a second worker), one block's forward eager vs compiled, the bare, anchor
     and base steps compiled, and the compiled step's latents against eager's (error)
     and against a second compiled step (bit-identical or not).
Raw numbers go to OUT/dit_step.json after every section (a timeout keeps what is
done); a markdown table is printed last.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from engine.compat import configure_cuda_allocator  # noqa: E402

configure_cuda_allocator()  # as the engine's entry points do, before any CUDA use

from engine import compiler  # noqa: E402
from engine.budget import (  # noqa: E402
    AUTO,
    activation_bytes,
    apply_budget,
    auto_budget,
    layer_sizes,
    margin_bytes,
    parse_budget,
    predicted_peak,
)
from engine.kv_cache import AnchorCache  # noqa: E402
from engine.kv_share import POSITIVE, AnchorRecorder, BaseSharer, ShareSettings  # noqa: E402
from engine.models.attention import attention, keyword_map, otsu_foreground  # noqa: E402
from engine.models.dit import DiTConfig, PoseGenDiT  # noqa: E402
from engine.sampler import ChunkInputs, load_state, sample  # noqa: E402

PRESETS: dict[str, dict[str, Any]] = {
    # Wan2.1-I2V-14B-720P with PoseGen's extras; 1280x720 portrait, 81 frames, 512 text
    # tokens; release defaults -s 0 2 -b 34 40, max_block_idx 10.
    "full": dict(cfg=DiTConfig(), height=1280, width=720, frames=81, text_tokens=512,
                 share_steps=(0, 2), share_blocks=(34, 40), max_block_idx=10,
                 budgets=["0 pageable", "0", "4e9", "auto 40G held"]),
    "tiny": dict(cfg=DiTConfig(dim=64, ffn_dim=128, text_dim=32, freq_dim=64, num_heads=2,
                               num_layers=6),
                 height=64, width=32, frames=9, text_tokens=16, share_steps=(0, 2),
                 share_blocks=(3, 6), max_block_idx=2, budgets=["0", "auto"]),
}
GiB = 1 << 30


def now() -> float:
    return time.perf_counter()


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.p = PRESETS[args.preset]
        self.cfg: DiTConfig = self.p["cfg"]
        if args.blocks:
            self.cfg = DiTConfig(**{**self.cfg.to_dict(), "num_layers": args.blocks,
                                    "patch_size": self.cfg.patch_size})
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.dtype = torch.bfloat16 if self.cuda else torch.float32
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(args.work)
        self.t0 = now()
        self.results: dict[str, Any] = {"preset": args.preset, "argv": sys.argv[1:]}
        self.last_latents: torch.Tensor | None = None  # after the last step()
        if args.compile or args.compile_probe:
            # The compiler's cache for this run: emptied by the main run, then read by the
            # probe (a new process: what a second worker pays).
            os.environ[compiler.CACHE_ENV] = str(self.work / "compile-cache")
        b0, b1 = self.p["share_blocks"]
        if b1 > self.cfg.num_layers:  # --blocks shrank the model: share its last blocks
            b0, b1 = max(0, self.cfg.num_layers - (b1 - b0)), self.cfg.num_layers
        self.share = ShareSettings(steps=self.p["share_steps"], blocks=(b0, b1),
                                   max_block_idx=min(self.p["max_block_idx"], b0))

    # -- bookkeeping ------------------------------------------------------------------------
    def log(self, msg: str) -> None:
        print(f"[dit_step +{now() - self.t0:6.1f}s] {msg}", flush=True)

    def save(self) -> None:
        tmp = self.out / "dit_step.json.tmp"
        tmp.write_text(json.dumps(self.results, indent=1, default=str))
        tmp.replace(self.out / "dit_step.json")

    def time_left(self) -> float:
        return self.args.time_limit - (now() - self.t0)

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self) -> int | None:
        return torch.cuda.max_memory_allocated(self.device) if self.cuda else None

    # -- model and inputs -------------------------------------------------------------------
    def environment(self) -> None:
        env: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                               "torch": torch.__version__, "python": platform.python_version(),
                               "host": platform.node()}
        if self.cuda:
            prop = torch.cuda.get_device_properties(self.device)
            env.update(device=prop.name, total_memory=prop.total_memory,
                       sms=prop.multi_processor_count, cuda=torch.version.cuda,
                       cudnn=torch.backends.cudnn.version())
        else:
            env["device"] = f"cpu ({os.cpu_count()} cores)"
        self.results["environment"] = env
        self.log(f"{env['device']}, torch {env['torch']}")

    def build_model(self) -> PoseGenDiT:
        """Random weights, built on the meta device and filled where they live."""
        with torch.device("meta"):
            model = PoseGenDiT(self.cfg)
        model = model.to(self.dtype).to_empty(device=self.device)
        g = torch.Generator(self.device).manual_seed(0)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("norm_q.weight") or name.endswith("norm_k.weight") or \
                        name.endswith("norm_k_img.weight") or ".norm" in name and \
                        name.endswith("weight"):
                    p.fill_(1.0)
                elif name.endswith("bias"):
                    p.zero_()
                else:  # keep activations in range through 40 random blocks
                    fan_in = p[0].numel() if p.dim() > 1 else p.numel()
                    p.normal_(0.0, 0.5 / math.sqrt(fan_in), generator=g)
        return model

    def make_inputs(self, model: PoseGenDiT) -> tuple[ChunkInputs, tuple[int, int, int], int]:
        h, w = self.p["height"] // 8, self.p["width"] // 8
        f = (self.p["frames"] - 1) // 4 + 1
        g = torch.Generator(self.device).manual_seed(1)
        d, dt = self.device, self.dtype

        def rnd(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=g, device=d).to(dt)

        with torch.no_grad():
            clip = rnd(1, 257, 1280)
            ctx = [model.embed_context(rnd(1, self.p["text_tokens"], self.cfg.text_dim), clip)
                   for _ in range(2)]
        inputs = ChunkInputs(cond=rnd(1, 20, f, h, w), hand=rnd(1, 16, f, h, w),
                             ref=rnd(1, 16, 1, h, w), context_pos=ctx[0], context_neg=ctx[1])
        grid = (f, h // 2, w // 2)
        n_tokens = f * (h // 2) * (w // 2) + (h // 2) * (w // 2)
        return inputs, grid, n_tokens

    # -- one step ---------------------------------------------------------------------------
    def step(self, model: PoseGenDiT, inputs: ChunkInputs, hook=None, step: int = 0,
             state: Path | None = None, n: int = 1) -> dict[str, Any]:
        """``n`` CFG sampling steps through the engine's sampler from step index ``step``;
        ``seconds`` is the first step's, ``wall`` includes the sampler's return (an anchor
        hook's last cache writes and step saves, which it drains before returning)."""
        done: list[float] = []
        steps = 25

        def on_step(k: int, total: int, seconds: float) -> None:
            done.append(seconds)

        state = state or self.work / "state.safetensors"  # its write syncs, like the engine's
        state.unlink(missing_ok=True)
        self.sync()
        self.reset_peak()
        t = now()
        if step:  # start at `step`: a state file says where the chunk stands
            from engine.sampler import initial_noise, save_state

            shape = (1, 16, *inputs.cond.shape[2:])
            save_state(state, {}, step, initial_noise(0, shape))
        sample(model, inputs, seed=0, steps=steps, cfg_scale=5.0, shift=5.0,
               device=self.device, hook=hook, state_path=state, state_key={},
               on_step=on_step, should_stop=lambda: len(done) >= n)
        self.sync()
        out = {"seconds": done[0], "wall": now() - t, "peak_bytes": self.peak()}
        if n > 1:
            out["step_seconds"] = done
        saved = load_state(state, {})  # the latents after the steps, float32
        self.last_latents = saved[1] if saved is not None else None
        return out

    # -- sections ---------------------------------------------------------------------------
    def steps_section(self, model: PoseGenDiT, inputs: ChunkInputs, grid, n_tokens: int,
                      suffix: str = "") -> dict[str, torch.Tensor | None]:
        """Bare, anchor, base and bare-again steps (rows named with ``suffix``); the
        release's base step only in the eager, non---compile run. Returns the latents
        after the bare steps (for the compiled rows' comparison)."""
        res: dict[str, Any] = self.results.setdefault("steps", {})
        res.update(tokens=n_tokens, grid=grid,
                   share={"steps": self.share.steps, "blocks": self.share.blocks,
                          "max_block_idx": self.share.max_block_idx})
        keyword = 3
        state = self.work / "state.safetensors"
        latents: dict[str, torch.Tensor | None] = {}
        if not suffix:
            self.log("warm-up forward")
            t = now()
            with torch.no_grad():
                model(torch.zeros_like(inputs.hand), inputs.cond, inputs.hand, inputs.ref,
                      inputs.context_pos, torch.tensor([999.0], device=self.device))
            self.sync()
            res["warmup_forward_seconds"] = now() - t
            self.log(f"warm-up forward {res['warmup_forward_seconds']:.2f} s")
        res["bare" + suffix] = self.step(model, inputs, state=state)
        latents["bare"] = self.last_latents
        self.log(f"bare{suffix} step {res['bare' + suffix]['seconds']:.2f} s")
        self.save()

        # The anchor as a chunk runs it: its share steps, then one that shares nothing (its
        # cache writes drain behind that step's compute), to the sampler's return, when
        # every cache file and step save is on disk. A one-step figure would hide the
        # writes or, waiting for them, count what the next step hides.
        cache = AnchorCache(self.work / f"anchor{suffix}")
        cache.start({"bench": True})
        rec = AnchorRecorder(cache, self.share, keyword, grid)
        share_steps = self.share.steps[1] - self.share.steps[0]
        n = share_steps + 1
        anchor = res["anchor" + suffix] = self.step(model, inputs, rec, state=state, n=n)
        cache.finish()
        written = cache.writer.bytes_written / share_steps
        maps = cache.maps_path(0).stat().st_size
        bare = res["bare" + suffix]["seconds"]
        extra = (anchor["wall"] - n * bare) / share_steps
        anchor.update(cache_bytes_step=written + maps, input_bytes_step=written,
                      steps_run=n, share_steps_run=share_steps,
                      seconds_per_step_with_writes=anchor["wall"] / n,
                      extra_seconds_per_share_step=extra,
                      share_step_vs_bare=(bare + extra) / bare)
        self.log(f"anchor{suffix}: {n} steps {anchor['step_seconds']} in {anchor['wall']:.2f} s "
                 f"with every write on disk; {extra:+.2f} s per share step over bare; wrote "
                 f"{(written + maps) / GiB:.2f} GiB per share step")
        self.save()

        sharer = BaseSharer(cache, self.share, keyword, grid, self.device)
        base = res["base" + suffix] = self.step(model, inputs, sharer, state=state)
        sharer.prefetcher.close()
        latents["base"] = self.last_latents
        base["bytes_read"] = sharer.prefetcher.bytes_read
        base["foreground_fraction"] = sharer.foreground_fraction
        self.log(f"base{suffix} step {base['seconds']:.2f} s "
                 f"(fg {sharer.foreground_fraction[:1]})")
        self.save()

        res["bare_again" + suffix] = self.step(model, inputs, state=state)
        latents["bare_again"] = self.last_latents
        self.log(f"bare{suffix} step again {res['bare_again' + suffix]['seconds']:.2f} s")
        self.save()

        if self.args.compile:
            res.setdefault("release_base", {"skipped": "--compile run (see the issue #6 rows)"})
        elif self.time_left() > 200 or not self.cuda:
            release = ReleaseBaseStep(self, model, n_tokens, grid, keyword)
            res["release_setup"] = release.setup()
            res["release_base"] = self.step(model, inputs, release, state=state)
            res["release_base"]["parts"] = release.parts
            self.log(f"release base step {res['release_base']['seconds']:.2f} s "
                     f"{ {k: round(v, 2) for k, v in release.parts.items()} }")
            release.cleanup()
        else:
            res["release_base"] = {"skipped": f"{self.time_left():.0f} s left"}
        self.save()
        if not suffix:
            res["cache_bytes"] = self.cache_bytes(n_tokens, anchor)
        shutil.rmtree(cache.root, ignore_errors=True)  # 9 GiB per share step at full size
        self.save()
        return latents

    def compile_section(self, model: PoseGenDiT, inputs: ChunkInputs, grid, n_tokens: int,
                        eager: dict[str, torch.Tensor | None]) -> None:
        """Compiled DiT blocks: compile cost, one block's forward, steps, numerics."""
        res: dict[str, Any] = {"cache_dir": str(compiler.cache_dir()),
                               "inductor_options": compiler.inductor_options()}
        self.results["compile"] = res
        reason = compiler.unavailable_reason(self.device)
        if reason is not None:
            res["skipped"] = reason
            self.log(f"compiled rows skipped: {reason}")
            self.save()
            return
        shutil.rmtree(compiler.cache_dir(), ignore_errors=True)  # the first compile is cold
        block = self.block_inputs(model, inputs)
        res["block_eager"] = self.time_block(model, block)
        self.log(f"one block eager {res['block_eager']['seconds'] * 1e3:.1f} ms")

        compiler.compile_blocks(model)
        x = (torch.zeros_like(inputs.hand), inputs.cond, inputs.hand, inputs.ref,
             inputs.context_pos, torch.tensor([999.0], device=self.device, dtype=self.dtype))
        for name in ("first_compile", "second_call"):
            self.sync()
            t = now()
            with torch.no_grad():
                model.warm_up(*x)  # one block at these shapes: compiles every block's code
            self.sync()
            res[f"{name}_seconds"] = now() - t
            self.log(f"compiled blocks: {name.replace('_', ' ')} {now() - t:.2f} s")
            self.save()
        res["block_compiled"] = self.time_block(model, block)
        self.log(f"one block compiled {res['block_compiled']['seconds'] * 1e3:.1f} ms")
        del block
        self.save()

        compiled = self.steps_section(model, inputs, grid, n_tokens, suffix="_compiled")
        res["numerics"] = numerics(eager, compiled)
        self.log(f"compiled vs eager: {res['numerics']}")
        res["probe"] = (self.compile_probe() if self.time_left() > 90 or not self.cuda else
                        {"skipped": f"{self.time_left():.0f} s left"})
        self.log(f"new process, warm cache: {res['probe']}")
        compiler.eager_blocks(model)
        self.save()

    def block_inputs(self, model: PoseGenDiT, inputs: ChunkInputs) -> tuple:
        with torch.no_grad():
            tokens, _, n_video, _, (t_mod, t0_mod), rope, context = model._tokens(
                torch.zeros_like(inputs.hand), inputs.cond, inputs.hand, inputs.ref,
                inputs.context_pos, torch.tensor([999.0], device=self.device))
        return tokens, context, t_mod, t0_mod, rope, n_video, 0, None

    def time_block(self, model: PoseGenDiT, block: tuple, repeat: int = 3) -> dict[str, Any]:
        """One block's forward (block 0, no hook): best of ``repeat`` after one warm call."""
        times = []
        self.reset_peak()
        with torch.no_grad():
            for _ in range(repeat + 1):
                self.sync()
                t = now()
                model.blocks[0](*block)
                self.sync()
                times.append(now() - t)
        return {"seconds": min(times[1:]), "first_call": times[0], "peak_bytes": self.peak()}

    def compile_probe(self) -> dict[str, Any]:
        """A new process that compiles the blocks from this run's (now warm) cache."""
        cmd = [sys.executable, str(Path(__file__).resolve()), "--compile-probe",
               "--preset", self.args.preset, "--device", self.args.device, "--out",
               str(self.work / "probe"), "--work", str(self.work)]
        t = now()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                              env=dict(os.environ))
        out: dict[str, Any] = {"process_seconds": now() - t, "returncode": proc.returncode}
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode == 0 and lines:
            out.update(json.loads(lines[-1]))
        else:
            out["error"] = (proc.stderr or proc.stdout)[-800:]
        return out

    def probe(self) -> None:
        """--compile-probe: build one block, compile at the preset's shapes, print JSON."""
        t_start = now()
        self.cfg = DiTConfig(**{**self.cfg.to_dict(), "num_layers": 1,
                                "patch_size": self.cfg.patch_size})
        model = self.build_model()
        if self.cuda:
            apply_budget(model, None, self.device, self.dtype)
        inputs, _, _ = self.make_inputs(model)
        compiler.compile_blocks(model)
        self.sync()
        t = now()
        with torch.no_grad():
            model.warm_up(torch.zeros_like(inputs.hand), inputs.cond, inputs.hand, inputs.ref,
                          inputs.context_pos,
                          torch.tensor([999.0], device=self.device, dtype=self.dtype))
        self.sync()
        print(json.dumps({"compile_seconds": now() - t, "ready_seconds": now() - t_start,
                          "cache_dir": str(compiler.cache_dir())}), flush=True)

    def cache_bytes(self, n_tokens: int, anchor: dict[str, Any]) -> dict[str, Any]:
        """Anchor-cache bytes at these settings: ours measured, the release's from shapes."""
        size = torch.empty((), dtype=self.dtype).element_size()
        dim = self.cfg.dim
        s0, s1 = self.share.steps
        b0, b1 = self.share.blocks
        n_steps, n_blocks = s1 - s0, b1 - b0
        video = n_tokens - n_tokens // ((self.p["frames"] - 1) // 4 + 2)  # minus one ref frame
        kv = 2 * n_tokens * dim * size * n_blocks * 2 * n_steps  # K and V, 2 passes
        # the release saves every block's cross-attention q (video tokens) and k (text), pos.
        qk = (video + self.p["text_tokens"]) * dim * size * self.cfg.num_layers * n_steps
        ours = anchor["cache_bytes_step"] * n_steps
        return {"ours_measured": ours, "release_kv": kv, "release_qk": qk,
                "release_total": kv + qk, "ratio": ours / (kv + qk),
                "ours_per_share_step": anchor["cache_bytes_step"]}

    def attention_section(self, n_tokens: int) -> None:
        """SDPA backends on the self-attention shape: time and error vs float32."""
        from torch.nn.attention import SDPBackend, sdpa_kernel

        heads, hd = self.cfg.num_heads, self.cfg.head_dim
        g = torch.Generator(self.device).manual_seed(2)
        q, k, v = (torch.randn(1, heads, n_tokens, hd, generator=g, device=self.device)
                   .to(self.dtype) for _ in range(3))
        rows = torch.randperm(n_tokens, generator=torch.Generator().manual_seed(3))[:256]
        rows = rows.to(self.device)
        # float32 reference on 256 query rows against every key
        ref = torch.softmax((q[:, :, rows].float() @ k.float().transpose(-1, -2)) / hd**0.5,
                            -1) @ v.float()
        flops = 4 * heads * n_tokens * n_tokens * hd
        names = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
                 "efficient": SDPBackend.EFFICIENT_ATTENTION}
        if not self.cuda:
            names = {"math": SDPBackend.MATH, "flash": SDPBackend.FLASH_ATTENTION}
        res: dict[str, Any] = {"tokens": n_tokens, "heads": heads, "head_dim": hd}
        for name, backend in names.items():
            try:
                with sdpa_kernel([backend]):
                    out = F.scaled_dot_product_attention(q, k, v)
                    self.sync()
                    times = []
                    for _ in range(3):
                        t = now()
                        F.scaled_dot_product_attention(q, k, v)
                        self.sync()
                        times.append(now() - t)
                err = (out[:, :, rows].float() - ref).norm() / ref.norm()
                best = min(times)
                res[name] = {"seconds": best, "tflops": flops / best / 1e12,
                             "rel_error": float(err)}
                del out
                self.log(f"attention {name}: {best * 1e3:.1f} ms, rel err {float(err):.2e}")
            except RuntimeError as e:
                res[name] = {"error": str(e).splitlines()[0][:200]}
        # what the engine's own attention() picks (q, k, v in its (B, n, heads, d) layout)
        t = now()
        attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        self.sync()
        t = now()
        attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        self.sync()
        res["engine"] = {"seconds": now() - t}
        self.results["attention"] = res
        del q, k, v, ref
        self.save()

    def budget_section(self, state: dict[str, torch.Tensor], inputs: ChunkInputs,
                       n_tokens: int) -> None:
        """Peak VRAM and step time per -p, and -p auto's prediction against the measure.

        ``state``: the weights on the CPU, unwrapped, as load_dit leaves them (pageable).
        """
        res: dict[str, Any] = {}
        self.results["budgets"] = res
        total = torch.cuda.get_device_properties(self.device).total_memory
        for text in self.p["budgets"]:
            if self.time_left() < 45:
                res[text] = {"skipped": f"{self.time_left():.0f} s left"}
                continue
            with torch.device("meta"):
                m = PoseGenDiT(self.cfg)
            m.load_state_dict(state, assign=True)
            # "0 pageable": streamed weights left in pageable memory (diffsynth's way);
            # "auto 40G held": -p auto while another tensor holds 40 GiB (a busier card)
            words = text.split()
            budget = parse_budget(words[0])
            pin = "pageable" not in words
            held = None
            if "held" in words:
                held = torch.empty(int(float(words[1].rstrip("G")) * GiB), dtype=torch.uint8,
                                   device=self.device)
            entry: dict[str, Any] = {"pinned": pin, "held_bytes": held.numel() if held is not
                                     None else 0}
            loose, layers = layer_sizes(m, self.dtype)
            act = activation_bytes(self.cfg.dim, n_tokens)
            free, _ = torch.cuda.mem_get_info(self.device)
            if budget == AUTO:
                budget, _ = auto_budget(m, self.dtype, free, total, n_tokens)
                entry["auto_free_bytes"] = free
            t = now()
            placed = apply_budget(m, budget, self.device, self.dtype, pin=pin)
            entry["place_seconds"] = now() - t
            entry.update(budget=budget, resident_params=placed.resident_params,
                         streamed_params=placed.streamed_params,
                         resident_layers=placed.resident_layers,
                         predicted_peak=predicted_peak(loose, layers, placed.resident_layers,
                                                       act),
                         activation_predicted=act)
            before = torch.cuda.memory_allocated(self.device)  # resident weights + inputs
            try:
                entry.update(self.step(m, inputs, state=self.work / "state.safetensors"))
            except torch.OutOfMemoryError as e:
                entry["oom"] = str(e).splitlines()[0]
                res[text] = entry
                self.log(f"-p {text}: OUT OF MEMORY ({entry['oom'][:100]})")
                del m, placed, held
                gc.collect()
                torch.cuda.empty_cache()
                self.save()
                continue
            if held is not None:
                before -= held.numel()
                entry["peak_bytes"] -= held.numel()
                del held
            entry["resident_bytes"] = 2 * placed.resident_params
            entry["allocated_before_step"] = before
            entry["activation_measured"] = entry["peak_bytes"] - before
            entry["prediction_error"] = (entry["predicted_peak"] - entry["peak_bytes"]) / \
                entry["peak_bytes"]
            entry["left_for_activations"] = total - entry["held_bytes"] - 2 * placed.resident_params
            res[text] = entry
            self.log(f"-p {text}: {entry['seconds']:.2f} s/step, peak "
                     f"{entry['peak_bytes'] / GiB:.1f} GiB, predicted "
                     f"{entry['predicted_peak'] / GiB:.1f} GiB")
            del m, placed
            gc.collect()
            torch.cuda.empty_cache()
            self.save()
        res["margin_bytes"] = margin_bytes(total)

    def copies_section(self, model: PoseGenDiT, inputs: ChunkInputs, grid) -> None:
        """Every host<->device copy of a bare, an anchor and a base step (torch profiler)."""
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
        cache = AnchorCache(self.work / "anchor_copies")
        cache.start({"bench": "copies"})
        res: dict[str, Any] = {}
        self.results["copies"] = res
        with torch.no_grad():  # warm-up forward: kernels chosen, allocator filled
            model(torch.zeros_like(inputs.hand), inputs.cond, inputs.hand, inputs.ref,
                  inputs.context_pos, torch.tensor([999.0], device=self.device))
        for name in ("bare", "anchor", "base"):
            hook = (None if name == "bare" else
                    AnchorRecorder(cache, self.share, 3, grid) if name == "anchor" else
                    BaseSharer(cache, self.share, 3, grid, self.device))
            with profile(activities=acts) as prof:
                step = self.step(model, inputs, hook)
            if name == "anchor":
                cache.finish()
            trace = self.work / f"trace_{name}.json"
            prof.export_chrome_trace(str(trace))
            res[name] = {"seconds_profiled": step["seconds"], "copies": copy_summary(trace)}
            trace.unlink()
            self.log(f"copies in a {name} step: {res[name]['copies']}")
            self.save()

    def run(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.environment()
        t = now()
        model = self.build_model()
        params = sum(p.numel() for p in model.parameters())
        self.results["model"] = {"params": params, "config": self.cfg.to_dict(),
                                 "build_seconds": now() - t}
        if self.cuda:
            placed = apply_budget(model, None, self.device, self.dtype)
            self.results["model"]["resident_params"] = placed.resident_params
        self.log(f"model: {params / 1e9:.2f} B params in {now() - t:.1f} s")
        inputs, grid, n_tokens = self.make_inputs(model)
        self.save()
        if self.args.copies:
            self.copies_section(model, inputs, grid)
            print(copies_table(self.results))
            return
        eager = self.steps_section(model, inputs, grid, n_tokens)
        if self.args.compile:
            self.compile_section(model, inputs, grid, n_tokens, eager)
        self.attention_section(n_tokens)
        if self.args.compile:
            self.results["budgets"] = {
                "skipped": "--compile run; streamed -p placements run eager (issue #6 rows)"}
        elif self.cuda:
            # Unwrapped CPU copy of the weights, as load_dit leaves them (pageable memory).
            state = {k.replace(".module.", "."): v.to("cpu")
                     for k, v in model.state_dict().items()}
            del model
            gc.collect()
            torch.cuda.empty_cache()
            self.budget_section(state, inputs, n_tokens)
        else:
            self.results["budgets"] = {
                "skipped": "the -p budget places layers on a CUDA device; CPU runs keep all"}
        self.results["total_seconds"] = now() - self.t0
        self.save()
        print(table(self.results))


class ReleaseBaseStep:
    """The release's base-step formulation, rebuilt here for timing only.

    At share steps: in map blocks it reads the anchor's full cross-attention q and k
    back with torch.load and builds both maps; in share blocks it reads K and V with
    torch.load, builds the dense (tokens x tokens) additive mask on the CPU, copies it
    to the GPU, and computes the masked attention over every query next to the
    chunk's own full attention, then mixes them. One saved file per tensor kind is
    read back for every block (page cache, like ours), since the q/k files of all
    blocks would not fit this disk.
    """

    def __init__(self, bench: Bench, model: PoseGenDiT, n_tokens: int, grid, keyword: int
                 ) -> None:
        self.b = bench
        self.n_tokens, self.grid, self.keyword = n_tokens, grid, keyword
        self.settings = bench.share
        self.dir = bench.work / "release"
        self.step_idx, self.cfg_pass = -1, POSITIVE
        self.parts: dict[str, float] = {}
        self._anchor_maps: list[torch.Tensor] = []
        self._own_maps: list[torch.Tensor] = []
        self._fg: dict[int, torch.Tensor] = {}

    def _add(self, part: str, seconds: float) -> None:
        self.parts[part] = self.parts.get(part, 0.0) + seconds

    def setup(self) -> dict[str, Any]:
        self.dir.mkdir(parents=True, exist_ok=True)
        cfg, b = self.b.cfg, self.b
        n_video = self.n_tokens - self.grid[1] * self.grid[2]
        g = torch.Generator(b.device).manual_seed(4)
        shape = (1, self.n_tokens, cfg.num_heads, cfg.head_dim)
        out: dict[str, Any] = {}
        for name, sh in (("k", shape), ("v", shape),
                         ("cross_q", (1, n_video, cfg.num_heads, cfg.head_dim)),
                         ("cross_k", (1, b.p["text_tokens"], cfg.num_heads, cfg.head_dim))):
            t = torch.randn(*sh, generator=g, device=b.device).to(b.dtype)
            b.sync()
            t0 = now()
            torch.save(t, self.dir / f"{name}.pt")
            out[f"save_{name}_seconds"] = now() - t0
            out[f"{name}_bytes"] = t.numel() * t.element_size()
        return out

    def cleanup(self) -> None:
        for p in self.dir.glob("*.pt"):
            p.unlink()

    def _load(self, name: str) -> torch.Tensor:
        t0 = now()
        t = torch.load(self.dir / f"{name}.pt", map_location=self.b.device)
        self.b.sync()
        self._add("torch_load", now() - t0)
        return t

    # the AttentionHook protocol
    def begin(self, step: int, cfg_pass: str) -> None:
        self.step_idx, self.cfg_pass = step, cfg_pass

    @property
    def sharing(self) -> bool:
        return self.settings.share_step(self.step_idx)

    def wants_keyword_map(self, block: int) -> bool:
        return (self.sharing and self.cfg_pass == POSITIVE
                and block <= self.settings.max_block_idx)

    def keyword_map(self, block: int, q_video: torch.Tensor, k_text: torch.Tensor) -> None:
        self._own_maps.append(keyword_map(q_video, k_text[:, self.keyword], self.grid))
        q_a, k_a = self._load("cross_q"), self._load("cross_k")
        self._anchor_maps.append(keyword_map(q_a, k_a[:, self.keyword], self.grid))

    def self_attention(self, block, q, k, v, n_video, x, project_kv):
        if not (self.sharing and self.settings.share_block(block)):
            return None
        k_a, v_a = self._load("k"), self._load("v")
        if self.cfg_pass == POSITIVE or block not in self._fg:
            fg = otsu_foreground(torch.stack(self._anchor_maps).mean(0))
            anchor_fg = fg
            if self._own_maps:
                fg = fg | otsu_foreground(torch.stack(self._own_maps).mean(0))
            self._fg[block] = fg
            self._anchor_fg = anchor_fg
        n = q.shape[1]
        t0 = now()
        a_fg = torch.zeros(n, dtype=torch.bool)
        a_fg[:n_video] = self._anchor_fg.reshape(-1).cpu()
        mask = torch.zeros(n, n, dtype=q.dtype)
        mask.masked_fill_(a_fg[:, None] & a_fg[None, :], float("-inf"))
        self._add("mask_build_cpu", now() - t0)
        t0 = now()
        mask = mask.to(q.device)
        self.b.sync()
        self._add("mask_copy", now() - t0)
        t0 = now()
        from torch.nn.attention import SDPBackend, sdpa_kernel

        # the kernels that take a dense mask without materialising the scores
        allowed = ([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION] if q.is_cuda
                   else [SDPBackend.MATH])
        with sdpa_kernel(allowed):
            shared = F.scaled_dot_product_attention(
                q.transpose(1, 2), k_a.transpose(1, 2), v_a.transpose(1, 2),
                attn_mask=mask[None, None]).transpose(1, 2).flatten(2)
        self.b.sync()
        self._add("masked_attention", now() - t0)
        del mask
        own = attention(q, k, v)
        rows = torch.zeros(n, dtype=torch.bool, device=q.device)
        rows[:n_video] = self._fg[block].reshape(-1).to(q.device)
        return torch.where(rows[None, :, None], own, shared)

    def end_forward(self) -> None:
        self._own_maps, self._anchor_maps = [], []

    def end_step(self, save, latents: torch.Tensor) -> None:
        self._fg = {}
        save(latents)

    def drain(self) -> None:
        pass


def numerics(eager: dict[str, torch.Tensor | None], compiled: dict[str, torch.Tensor | None]
             ) -> dict[str, Any]:
    """Latents after one step, compiled against eager (relative error, largest difference)
    and the two compiled bare steps against each other (the same bits or not)."""
    out: dict[str, Any] = {}
    for name in ("bare", "base"):
        a, b = eager.get(name), compiled.get(name)
        if a is not None and b is not None:
            out[f"{name}_rel_error"] = float((b - a).norm() / a.norm())
            out[f"{name}_max_abs"] = float((b - a).abs().max())
    a, b = compiled.get("bare"), compiled.get("bare_again")
    if a is not None and b is not None:
        out["compiled_runs_identical"] = bool(torch.equal(a, b))
    a, b = eager.get("bare"), eager.get("bare_again")
    if a is not None and b is not None:
        out["eager_runs_identical"] = bool(torch.equal(a, b))
    return out


def copy_summary(trace: Path) -> dict[str, dict[str, int]]:
    """Host<->device copies in a chrome trace: count and bytes per kind and size class."""
    events = json.loads(trace.read_text()).get("traceEvents", [])
    out: dict[str, dict[str, int]] = {}
    for e in events:
        if e.get("cat") != "gpu_memcpy":
            continue
        name = e.get("name", "?")
        if "DtoD" in name:
            continue  # device-internal, not a host copy
        size = int((e.get("args") or {}).get("bytes", 0))
        key = f"{name} {'>=1MiB' if size >= 1 << 20 else '<1MiB'}"
        entry = out.setdefault(key, {"count": 0, "bytes": 0})
        entry["count"] += 1
        entry["bytes"] += size
    return out


def copies_table(r: dict[str, Any]) -> str:
    env = r["environment"]
    lines = [f"## host<->device copies per step: {env['device']}, torch {env['torch']}, "
             f"{env['date']}", "", "| step | copy kind | size class | count | MiB |",
             "|---|---|---|---|---|"]
    for step, e in r.get("copies", {}).items():
        if not e["copies"]:
            lines.append(f"| {step} | none | | 0 | 0 |")
        for key, c in sorted(e["copies"].items()):
            kind, size = key.rsplit(" ", 1)
            lines.append(f"| {step} | {kind} | {size} | {c['count']} | "
                         f"{c['bytes'] / 2**20:.1f} |")
    return "\n".join(lines)


def table(r: dict[str, Any]) -> str:
    env, st = r["environment"], r.get("steps", {})
    lines = [f"## dit_step: {env['device']}, torch {env['torch']}, {env['date']}",
             f"model {r['model']['params'] / 1e9:.2f} B params, {st.get('tokens')} tokens", "",
             "| step (CFG, both passes) | s/step | vs bare | peak VRAM GiB |", "|---|---|---|---|"]
    bare = st.get("bare", {}).get("seconds")
    for name in ("bare", "anchor", "base", "bare_again", "release_base", "bare_compiled",
                 "anchor_compiled", "base_compiled", "bare_again_compiled"):
        e = st.get(name, {})
        if "extra_seconds_per_share_step" in e:
            continue  # an anchor as in a chunk: its own row below (its first step's time
            # leaves out the cache writes, which the next step's compute hides)
        if "seconds" in e:
            pk = f"{e['peak_bytes'] / GiB:.1f}" if e.get("peak_bytes") else "-"
            lines.append(f"| {name} | {e['seconds']:.3f} | {e['seconds'] / bare:.3f}x | {pk} |")
    for suffix in ("", "_compiled"):
        a, b = st.get("anchor" + suffix, {}), st.get("bare" + suffix, {})
        if "extra_seconds_per_share_step" in a:
            lines.append(f"| anchor{suffix} as in a chunk: {a['steps_run']} steps "
                         f"({a['share_steps_run']} sharing) to every write on disk, "
                         f"{a['wall']:.2f} s | {a['seconds_per_step_with_writes']:.3f} | "
                         f"share step {a['share_step_vs_bare']:.3f}x "
                         f"({a['extra_seconds_per_share_step']:+.2f} s over "
                         f"{b.get('seconds', 0):.2f}) | |")
    comp = r.get("compile", {})
    if "skipped" in comp:
        lines += ["", f"compiled rows: skipped ({comp['skipped']})"]
    elif comp:
        be, bc = comp.get("block_eager", {}), comp.get("block_compiled", {})
        probe = comp.get("probe", {})
        lines += ["", f"| compiled DiT blocks ({comp.get('inductor_options')}) | seconds |",
                  "|---|---|"]
        if "seconds" in be and "seconds" in bc:
            lines += [f"| one block forward, eager (block 0, no hook) | {be['seconds']:.4f} |",
                      f"| one block forward, compiled | {bc['seconds']:.4f} "
                      f"({be['seconds'] / bc['seconds']:.2f}x) |"]
        for key, what in (("first_compile_seconds", "first compile, this process, empty cache"),
                          ("second_call_seconds", "second call, same process")):
            if key in comp:
                lines.append(f"| {what} | {comp[key]:.2f} |")
        if "compile_seconds" in probe:
            lines.append(f"| new process, warm cache: compile (process start to ready) | "
                         f"{probe['compile_seconds']:.2f} ({probe['ready_seconds']:.1f}) |")
        elif "skipped" in probe:
            lines.append(f"| new process, warm cache | skipped ({probe['skipped']}) |")
        elif probe:
            lines.append(f"| new process, warm cache | failed: "
                         f"{str(probe.get('error', ''))[-80:]!r} |")
        num = comp.get("numerics", {})
        if num:
            lines += ["", "compiled vs eager, latents after one step: " + ", ".join(
                f"{k} {v:.2e}" if isinstance(v, float) else f"{k} {v}" for k, v in num.items())]
    cb = st.get("cache_bytes")
    if cb:
        lines += ["", f"anchor cache at these settings: ours {cb['ours_measured'] / GiB:.2f} GiB, "
                  f"release {cb['release_total'] / GiB:.2f} GiB "
                  f"(K/V {cb['release_kv'] / GiB:.2f} + cross q/k {cb['release_qk'] / GiB:.2f}); "
                  f"ratio {cb['ratio']:.3f}"]
    att = r.get("attention", {})
    if att:
        lines += ["", "| SDPA backend | ms | TFLOP/s | rel. error vs fp32 |", "|---|---|---|---|"]
        for name, e in att.items():
            if isinstance(e, dict) and "seconds" in e and name != "engine":
                lines.append(f"| {name} | {e['seconds'] * 1e3:.1f} | {e['tflops']:.0f} | "
                             f"{e['rel_error']:.2e} |")
            elif isinstance(e, dict) and "error" in e:
                lines.append(f"| {name} | unavailable: {e['error'][:60]} | | |")
        if "engine" in att:
            lines.append(f"| engine's attention() | {att['engine']['seconds'] * 1e3:.1f} | | |")
    bud = r.get("budgets", {})
    rows = [(k, e) for k, e in bud.items() if isinstance(e, dict) and "seconds" in e]
    ooms = [(k, e) for k, e in bud.items() if isinstance(e, dict) and "oom" in e]
    if rows:
        lines += ["", "| -p | resident params | s/step | peak GiB | predicted GiB | error |",
                  "|---|---|---|---|---|---|"]
        for k, e in rows:
            lines.append(f"| {k} | {e['resident_params'] / 1e9:.2f} B | {e['seconds']:.2f} | "
                         f"{e['peak_bytes'] / GiB:.1f} | {e['predicted_peak'] / GiB:.1f} | "
                         f"{e['prediction_error'] * 100:+.1f}% |")
    for k, e in ooms:
        lines.append(f"| {k} | {e['resident_params'] / 1e9:.2f} B | OOM | - | "
                     f"{e['predicted_peak'] / GiB:.1f} | - |")
    if "skipped" in bud:
        lines += ["", f"budgets: skipped ({bud['skipped']})"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("OUT", "/tmp/dit_step_out"))
    p.add_argument("--work", default="/tmp/dit_step_work")
    p.add_argument("--preset", choices=sorted(PRESETS), default="full")
    p.add_argument("--device", default="cuda")
    p.add_argument("--blocks", type=int, default=0, help="fewer DiT blocks (dry runs)")
    p.add_argument("--copies", action="store_true",
                   help="only profile the host<->device copies of a bare, anchor and base step")
    p.add_argument("--compile", action="store_true",
                   help="also the compiled rows (engine/compiler.py), beside the eager ones; "
                        "skips the release's base step and the -p budgets")
    p.add_argument("--compile-probe", action="store_true",
                   help="internal: compile one block from the cache and print the seconds")
    p.add_argument("--time-limit", type=float, default=540.0,
                   help="seconds after which optional parts are skipped")
    args = p.parse_args(argv)
    bench = Bench(args)
    if args.compile_probe:
        bench.probe()
    else:
        bench.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
