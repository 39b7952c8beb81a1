"""One generation job: inputs + settings -> chunks on disk -> merged video.

Everything a resume needs is in the job's folder; `engine.workspace.Workspace`
owns its layout.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from engine.atomic import atomic_path, atomic_write_json
from engine.budget import Budget
from engine.checkpoint.dit_loader import check_share_blocks
from engine.checkpoint.layout import CheckpointLayout, check_layout, resolve_checkpoint_dir
from engine.chunk_plan import ChunkPlan, make_plan
from engine.compiler import check_mode, requested_mode
from engine.conditions import condition_clip, frame_mask
from engine.errors import JobError  # noqa: F401  (re-exported)
from engine.kv_cache import AnchorCache, describe_changes
from engine.kv_share import AnchorRecorder, BaseSharer
from engine.media import (
    MediaError,
    center_crop,
    center_crop_resize,
    load_frames,
    read_image,
    read_video,
    save_frames,
    to_uint8_frames,
    write_mp4,
)
from engine.merge import merge_chunks
from engine.model_set import ModelSet
from engine.models.dit import PoseGenDiT
from engine.progress import EtaClock, PhaseClock, ProgressCallback, ProgressEvent
from engine.prompt import NEGATIVE_PROMPT, clean_prompt, find_keyword
from engine.sampler import ChunkInputs, sample, saved_key
from engine.settings import (  # noqa: F401  (re-exported)
    VAE_TILINGS,
    JobInputs,
    JobSettings,
)
from engine.stability import background_motion, sample_stride
from engine.workspace import Workspace

# Part of every run's fingerprint: outputs made under other arithmetic rules (before the
# release's rounding, Otsu, merge and tiling rules of ENGINE-SPEC section 10) are never
# mixed into a run made under these.
NUMERICS = "release-2026-12"


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


@dataclass
class ChunkResult:
    index: int
    role: str
    seconds: float
    steps_run: int
    seconds_per_step: float | None
    peak_vram_bytes: int | None
    extra: dict[str, Any] = field(default_factory=dict)


class Job:
    def __init__(self, out_dir: str | Path, inputs: JobInputs, settings: JobSettings,
                 ckpt: str | Path | None = None, device: str = "cpu",
                 budget: Budget = None, progress: ProgressCallback | None = None) -> None:
        self.out = Path(out_dir)
        self.workspace = Workspace(self.out)
        self.inputs = inputs
        self.settings = settings
        self.device = device
        self.budget = budget
        self.progress = progress or (lambda event: None)
        self.layout = CheckpointLayout(resolve_checkpoint_dir(ckpt))
        self.dtype = settings.torch_dtype(device)
        self.models: ModelSet | None = None
        self.plan: ChunkPlan | None = None
        self._pose: np.ndarray | None = None
        self._hand: np.ndarray | None = None
        self._fps = 0.0
        self._cond: dict[str, torch.Tensor] | None = None
        self._keyword_token = -1
        self.clock: EtaClock | None = None
        self._fingerprint: dict[str, Any] | None = None

    # -- paths ---------------------------------------------------------------
    @functools.cached_property
    def anchor_cache(self) -> AnchorCache:
        # One instance per job: it owns the writer thread whose queue finish() drains.
        return AnchorCache(self.workspace.anchor_cache_dir)

    @property
    def video_path(self) -> Path:
        return self.workspace.video

    def is_done(self, i: int) -> bool:
        return self.workspace.is_done(i)

    # -- preparation ---------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        if self._fingerprint is None:
            self._fingerprint = self._compute_fingerprint()
        return self._fingerprint

    def _compute_fingerprint(self) -> dict[str, Any]:
        s = asdict(self.settings)
        s["share_steps"] = list(self.settings.share_steps)
        s["share_blocks"] = list(self.settings.share_blocks)
        s["dtype"] = str(self.dtype).replace("torch.", "")
        # How the DiT runs, not what it computes (float noise, like the device): a workspace
        # may be resumed under another --compile. Chunks record it in their step state.
        del s["compile"]
        ckpt = {kind: file_digest(self.layout.dit_dir(kind) / "model_config.json")
                for kind in ("base", "cond")}
        return {
            "numerics": NUMERICS,
            "settings": s,
            "prompt": clean_prompt(self.inputs.prompt),
            "image": file_digest(self.inputs.image),
            "pose": file_digest(self.inputs.pose),
            "hand": file_digest(self.inputs.hand),
            "checkpoint": {"path": str(self.layout.root.resolve()), **ckpt},
        }

    def prepare(self, restart: bool = False) -> ChunkPlan:
        """Validate everything, read the driving clips, plan, and claim the workspace."""
        self.settings.validate()
        check_layout(self.layout)
        check_share_blocks(self.settings.share_blocks, self.layout.dit_dir("base"))
        dev = torch.device(self.device)
        check_mode(self.settings.compile, self.device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise JobError(f"--device {self.device}: this machine's torch sees no CUDA GPU "
                           f"(torch {torch.__version__}); use --device cpu, or a CUDA build "
                           "of torch on a machine with an NVIDIA driver")
        if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
            raise JobError(f"--device {self.device}: this machine has "
                           f"{torch.cuda.device_count()} visible GPU(s), numbered from 0")
        find_keyword(clean_prompt(self.inputs.prompt))  # fail before any heavy work
        for name, path in (("--image", self.inputs.image), ("--pose", self.inputs.pose),
                           ("--hand", self.inputs.hand)):
            if not Path(path).is_file():
                raise MediaError(f"{name} {path}: file not found")
        fp = self.fingerprint()
        run_file = self.workspace.run_file
        if restart:
            self.discard_outputs()
        elif run_file.exists():
            old = json.loads(run_file.read_text()).get("fingerprint", {})
            if old != fp:
                raise JobError(
                    f"{self.out} holds a run with other inputs or settings "
                    f"({describe_changes(_flat(old), _flat(fp))}). Use another --out, or "
                    "pass --restart to discard that run's chunks and start over")
        self._pose, self._fps = read_video(self.inputs.pose)
        self._hand, _ = read_video(self.inputs.hand)
        if len(self._hand) != len(self._pose):
            raise MediaError(
                f"{self.inputs.hand}: {len(self._hand)} frames but the pose video "
                f"{self.inputs.pose} has {len(self._pose)}; both must be rendered from the same "
                "driving video (posegen prepare writes matching clips)")
        s = self.settings
        self.plan = make_plan(len(self._pose), s.spec, s.num_chunks, s.anchor, s.pad)
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_file, {"fingerprint": fp, "fps": self._fps,
                                     "num_chunks": self.plan.num_chunks,
                                     "total_frames": self.plan.total_frames})
        if self.clock is None:  # a worker calls run_chunk without run(): its step rate too
            self.clock = EtaClock(total_steps=self.plan.num_chunks * s.steps)
        return self.plan

    def discard_outputs(self) -> None:
        """Remove this job's generated files (never the inputs or anything else)."""
        self.workspace.discard_outputs()

    def _models(self) -> ModelSet:
        if self.models is None:
            s = self.settings
            # video tokens (latent frames x patches) + one frame of reference tokens
            patches = (s.height // 16) * (s.width // 16)
            n_tokens = ((s.frames - 1) // 4 + 1) * patches + patches
            self.models = ModelSet(self.layout, self.device, self.dtype, self.budget,
                                   s.vae_tiling, n_tokens=n_tokens, compile=s.compile)
        return self.models

    def conditions(self) -> dict[str, torch.Tensor]:
        """Job-wide conditions, computed once and kept on disk for resumes."""
        if self._cond is not None:
            return self._cond
        path = self.workspace.conditions
        prompt = clean_prompt(self.inputs.prompt)
        _, char_pos = find_keyword(prompt)
        if path.exists():
            cond = load_file(str(path))
        else:
            models = self._models()
            s = self.settings
            tokenizer = models.tokenizer
            try:  # before the text encoder loads: a prompt error costs no model load
                keyword = tokenizer.token_index_of_char(prompt, char_pos)
            except ValueError as e:
                raise JobError(f"prompt: {e}; the text encoder reads the first "
                               f"{tokenizer.seq_len} tokens, so put the subject word "
                               "(woman, man, ...) early and shorten the prompt") from None
            (pos, neg), _ = models.encode_texts([prompt, NEGATIVE_PROMPT])
            image = center_crop_resize(read_image(self.inputs.image), s.height, s.width)
            clip = models.encode_image(image)
            ref = models.encode_video(image, tiled=False).float().cpu()  # untiled, as the release
            cond = {"text_pos": pos, "text_neg": neg, "clip": clip, "ref": ref,
                    "keyword_token": torch.tensor([keyword])}
            with atomic_path(path) as tmp:
                save_file({k: v.contiguous() for k, v in cond.items()}, str(tmp))
        self._keyword_token = int(cond["keyword_token"][0])
        self._cond = cond
        return cond

    # -- chunks --------------------------------------------------------------
    def run_id(self) -> str:
        fp = self.fingerprint()
        return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]

    def anchor_seed(self) -> int:
        """The seed the finished anchor was made with (a retry may have changed it)."""
        seed = self.workspace.done_seed(self.settings.anchor)
        return self.settings.seed if seed is None else seed

    def anchor_settings(self, seed: int) -> dict[str, Any]:
        """What the anchor cache depends on; a base chunk checks it before reading."""
        return {"fingerprint": self.run_id(),
                "seed": seed, "steps": self.settings.steps,
                "share_steps": list(self.settings.share_steps),
                "share_blocks": list(self.settings.share_blocks),
                "anchor": self.settings.anchor}

    def run_chunk(self, i: int, *, should_stop: Callable[[], bool] | None = None,
                  seed: int | None = None) -> ChunkResult | None:
        """Generate chunk ``i`` (resuming its saved step); None if stopped early.

        Phases, each timed into ``done.json``: loading (models, job-wide conditions),
        encoding (this chunk's conditions), compiling (only the first time this process
        runs compiled DiT blocks at these shapes), sampling, decoding, writing.
        """
        plan = self._require_plan()
        chunk = plan.chunks[i]
        missing = [d for d in plan.dependencies(i) if not self.is_done(d)]
        if missing:
            raise JobError(f"chunk {i} needs chunks {missing} first")
        seed = self.settings.seed if seed is None else seed
        t_start = time.perf_counter()
        self._emit("chunk_start", i, chunk.role)
        models = self._models()
        clock = PhaseClock(lambda name: self._emit("phase", i, chunk.role, message=name),
                           sync=models.sync)
        stop = should_stop or (lambda: False)
        with clock.phase("loading"):
            cond, dit = self._load(chunk.role)
        if stop():  # a pause or stop is honoured between phases too, not only between steps
            return None
        key = {"chunk": i, "seed": seed, "run": self.run_id()}
        with clock.phase("encoding"):
            inputs, grid = self._encode(i, key, dit, cond)
        if stop():
            return None
        if models.compile_for(self._dit_kind(chunk.role), _shapes(inputs)):
            with clock.phase("compiling"):
                self._compile(i, chunk.role, dit, inputs)
            if dit.compiled:
                self._emit("compiled", i, chunk.role,
                           message=f"DiT blocks compiled in {clock.seconds['compiling']:.1f} "
                                   f"s; {models.compile_decision.reason}")
            if stop():
                return None
        with clock.phase("sampling"):
            latents, hook, step_times = self._sample(i, dit, inputs, grid, key, seed,
                                                     should_stop)
        if latents is None:
            return None
        with clock.phase("decoding"):
            frames = self._decode(latents)
        with clock.phase("writing"):
            self._write(i, chunk.role, frames)
            motion = self._background_motion(i, frames)
        result = self._chunk_result(i, chunk.role, seed, time.perf_counter() - t_start,
                                    clock, hook, step_times)
        result.extra["background_motion"] = motion
        self._finish(result, step_times)
        return result

    def _load(self, role: str) -> tuple[dict[str, torch.Tensor], PoseGenDiT]:
        """Loading: the job-wide conditions (encoded by the first chunk) and the DiT of
        chunk role ``role``."""
        cond = self.conditions()
        dit = self._models().dit(self._dit_kind(role))
        return cond, dit

    @staticmethod
    def _dit_kind(role: str) -> str:
        return "cond" if role == "cond" else "base"

    def _compile(self, i: int, role: str, dit: PoseGenDiT, inputs: ChunkInputs) -> None:
        """Compiling: one block's forward at this chunk's shapes, so the compiled block
        code is made (or read from the compiler's cache) before the first step's clock
        starts. Nothing of it is kept: the output is dropped, no hook runs.

        If the compiler fails, ``--compile auto`` runs this DiT eager (a notice says why)
        and ``--compile on`` stops with the compiler's error; no step has run either way.
        """
        models = self._models()
        dev = models.device
        shape = (1, 16, *inputs.cond.shape[2:])
        try:
            with torch.no_grad():
                dit.warm_up(torch.zeros(shape, device=dev, dtype=self.dtype), inputs.cond,
                            inputs.hand, inputs.ref, inputs.context_pos,
                            torch.full((1,), 999.0, device=dev, dtype=self.dtype))
        except Exception as e:
            if isinstance(e, torch.OutOfMemoryError):
                raise
            what = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e) else ''}"
            if requested_mode(self.settings.compile) == "on":
                raise JobError(f"--compile on: compiling the DiT blocks failed ({what}); "
                               "use --compile auto or --no-compile") from e
            models.run_eager(self._dit_kind(role), f"off: compiling failed ({what})")
            self._emit("notice", i, role, message=f"compiling the DiT blocks failed ({what}); "
                                                  "running them eager")

    def _decode(self, latents: torch.Tensor) -> np.ndarray:
        """Decoding: the sampled latents to uint8 frames."""
        return to_uint8_frames(self._models().decode(latents))

    def _write(self, i: int, role: str, frames: np.ndarray) -> None:
        """Writing: chunk ``i``'s frames (lossless and as mp4); an anchor also waits for
        its K/V cache to reach the disk."""
        ws = self.workspace
        save_frames(ws.frames(i), frames)
        write_mp4(ws.preview(i), frames, self._fps)
        if role == "anchor":
            self.anchor_cache.finish()

    def _background_motion(self, i: int, frames: np.ndarray) -> float | None:
        """The chunk's background change per frame (engine/stability.py), against its
        pose frames cropped and resized as the DiT saw them."""
        pose_clip, _ = self._driving_clips()
        n = sample_stride(*frames.shape[1:3])
        small = frames[:, ::n, ::n]
        h, w = self.settings.height, self.settings.width
        pose = center_crop(pose_clip[self._require_plan().condition_indices(i)], h, w)
        size = (small.shape[2], small.shape[1])  # OpenCV: (width, height)
        pose = np.stack([cv2.resize(p, size, interpolation=cv2.INTER_AREA) for p in pose])
        return background_motion(small, pose)

    def _chunk_result(self, i: int, role: str, seed: int, seconds: float, clock: PhaseClock,
                      hook: AnchorRecorder | BaseSharer | None, step_times: list[float]
                      ) -> ChunkResult:
        """What ``done.json`` records of a chunk that took ``seconds`` in all."""
        models = self._models()
        dev = models.device
        return ChunkResult(
            index=i, role=role, seconds=seconds,
            steps_run=len(step_times),
            seconds_per_step=(sum(step_times) / len(step_times)) if step_times else None,
            peak_vram_bytes=torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None,
            extra={"seed": seed, "budget": self.budget,
                   "compiled": models.compile_decision.compiled,
                   "compile": models.compile_decision.reason,
                   "resolved_budget": models.resolved_budget,
                   "predicted_peak_bytes": models.predicted_peak,
                   "foreground_fraction": (sum(hook.foreground_fraction)
                                           / len(hook.foreground_fraction))
                   if isinstance(hook, BaseSharer) and hook.foreground_fraction else None,
                   "phases": clock.seconds, "model_loading": dict(models.load_seconds)})

    def _finish(self, result: ChunkResult, step_times: list[float]) -> None:
        """Mark the chunk done (``done.json`` last of its outputs), then drop what only a
        resume needed: its saved state and its condition latents."""
        ws, i = self.workspace, result.index
        atomic_write_json(ws.done_file(i), asdict(result))
        if self.clock is not None:
            self.clock.chunk_done(result.seconds, sum(step_times))
        ws.state(i).unlink(missing_ok=True)
        ws.chunk_conditions(i).unlink(missing_ok=True)
        self._emit("chunk_done", result.index, result.role, step=self.settings.steps,
                   steps=self.settings.steps)

    def _encode(self, i: int, key: dict[str, Any], dit: PoseGenDiT,
                cond: dict[str, torch.Tensor]) -> tuple[ChunkInputs, tuple[int, int, int]]:
        """Encoding: what the DiT sees of chunk ``i`` besides the noisy latents, and its
        token grid."""
        s, dev = self.settings, self._models().device
        role = self._require_plan().chunks[i].role
        pose_lat, hand_lat = self._condition_latents(i, key)
        mask = frame_mask(s.frames, s.height, s.width, s.head if role == "cond" else 0,
                          s.tail if role == "cond" else 0)
        cond_in = torch.cat([mask[None].to(dev, self.dtype), pose_lat], dim=1)
        with torch.no_grad():
            clip = cond["clip"].to(dev, self.dtype)
            inputs = ChunkInputs(
                cond=cond_in, hand=hand_lat, ref=cond["ref"].to(dev, self.dtype),
                context_pos=dit.embed_context(cond["text_pos"].to(dev, self.dtype), clip),
                context_neg=dit.embed_context(cond["text_neg"].to(dev, self.dtype), clip))
        grid = (pose_lat.shape[2], pose_lat.shape[3] // 2, pose_lat.shape[4] // 2)
        return inputs, grid

    def _sample(self, i: int, dit: PoseGenDiT, inputs: ChunkInputs, grid: tuple[int, int, int],
                key: dict[str, Any], seed: int, should_stop: Callable[[], bool] | None
                ) -> tuple[torch.Tensor | None, AnchorRecorder | BaseSharer | None, list[float]]:
        """Sampling: denoise chunk ``i`` with its role's KV-sharing hook; (latents, hook,
        step times)."""
        s, dev = self.settings, self._models().device
        role = self._require_plan().chunks[i].role
        hook: AnchorRecorder | BaseSharer | None = None
        if role == "anchor":
            self.anchor_cache.start(self.anchor_settings(seed))
            hook = AnchorRecorder(self.anchor_cache, s.share, self._keyword_token, grid)
        elif role == "base":
            self.anchor_cache.check(self.anchor_settings(self.anchor_seed()))
            hook = BaseSharer(self.anchor_cache, s.share, self._keyword_token, grid, dev)
        s.share.validate(s.steps, dit.cfg.num_layers)
        state_key = self._state_key(i, role, key, dit.compiled)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        step_times: list[float] = []

        def on_step(done: int, total: int, seconds: float) -> None:
            step_times.append(seconds)
            if self.clock is not None:
                self.clock.step(seconds)
            self._emit("step", i, role, step=done, steps=total)

        try:
            latents = sample(dit, inputs, seed=seed, steps=s.steps, cfg_scale=s.cfg_scale,
                             shift=s.shift, device=dev, hook=hook,
                             state_path=self.workspace.state(i),
                             state_key=state_key, on_step=on_step, should_stop=should_stop,
                             dtype=self.dtype)
        finally:
            if isinstance(hook, BaseSharer):
                hook.prefetcher.close()  # its reader thread and pinned buffers
        return latents, hook, step_times

    def _state_key(self, i: int, role: str, key: dict[str, Any], compiled: bool
                   ) -> dict[str, Any]:
        """The key chunk ``i``'s saved steps must carry to be resumed by this worker.

        Compiled steps are marked, so a chunk continues only under the DiT code that made
        its saved steps; a state from the other kind (a resume with another --compile, or
        where -p now streams weights) is not trusted: the chunk starts over, and says so.
        Eager keys are as before compiled blocks existed, so older states resume.
        """
        state_key = {**key, "dit": "compiled"} if compiled else dict(key)
        stored = saved_key(self.workspace.state(i))
        if stored is not None and stored != state_key and \
                {k: v for k, v in stored.items() if k != "dit"} == key:
            was, now = ("compiled", "eager") if stored.get("dit") else ("eager", "compiled")
            self._emit("notice", i, role,
                       message=f"its saved steps ran {was}, this worker runs the "
                               f"DiT {now}; the chunk starts over (one chunk never mixes "
                               "the two)")
        return state_key

    def _condition_latents(self, i: int, key: dict[str, Any]
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """Chunk ``i``'s pose and hand latents, encoded once and kept until it is done.

        A resumed chunk reads them back instead of encoding again: the encode's result
        can depend on the device's kernel choice (a batch of tiles sized to the free
        memory), and the rest of the chunk must see the very same conditions.
        """
        s, plan, models = self.settings, self._require_plan(), self._models()
        path = self.workspace.chunk_conditions(i)
        head = tail = None
        if plan.chunks[i].role == "cond":
            head = load_frames(self.workspace.frames(i - 1))[-s.head:]
            tail = load_frames(self.workspace.frames(i + 1))[: s.tail]
            # A neighbour generated again (retry, new anchor) makes these latents stale.
            key = {**key, "neighbours": hashlib.sha256(head.tobytes() + tail.tobytes())
                   .hexdigest()[:16]}
        stored = load_chunk_conditions(path, key)
        if stored is not None:
            return (stored["pose"].to(models.device, self.dtype),
                    stored["hand"].to(models.device, self.dtype))
        pose_clip, hand_clip = self._driving_clips()
        pose = condition_clip(pose_clip, plan, i, s.height, s.width, head, tail)
        hand = condition_clip(hand_clip, plan, i, s.height, s.width, head, tail)
        pose_lat, hand_lat = models.encode_video(pose), models.encode_video(hand)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_file({"pose": pose_lat.cpu().contiguous(), "hand": hand_lat.cpu().contiguous()},
                      str(tmp), metadata={"key": json.dumps(key, sort_keys=True)})
        return pose_lat, hand_lat

    @property
    def loaded_dit(self) -> str | None:
        """The DiT kind ("base" or "cond") this job holds in memory, or None."""
        return self.models.loaded_dit if self.models is not None else None

    def release_models(self) -> None:
        """Drop every model so a paused worker holds no GPU memory."""
        if self.models is not None:
            self.models.release()
        self.models = None

    def merge(self) -> Path:
        plan = self._require_plan()
        missing = [i for i in range(plan.num_chunks) if not self.is_done(i)]
        if missing:
            raise JobError(f"cannot merge: chunks {missing} are not done yet")
        frames = [load_frames(self.workspace.frames(i)) for i in range(plan.num_chunks)]
        video = merge_chunks(frames, plan)
        write_mp4(self.video_path, video, self._fps)
        self._emit("merge_done", message=str(self.video_path))
        return self.video_path

    def run(self, restart: bool = False, should_stop: Callable[[], bool] | None = None
            ) -> Path | None:
        """Everything: anchor -> base -> cond -> merge, skipping finished chunks."""
        plan = self.prepare(restart=restart)
        todo = [i for i in plan.order() if not self.is_done(i)]
        self.clock = EtaClock(total_steps=plan.num_chunks * self.settings.steps)
        self.clock.skip((plan.num_chunks - len(todo)) * self.settings.steps)
        self.clock.chunks_left = len(todo)
        self._emit("job_start", message=f"{len(todo)} of {plan.num_chunks} chunks to generate")
        for i in plan.order():
            if self.is_done(i):
                self._emit("chunk_skipped", i, plan.chunks[i].role)
                continue
            if self.run_chunk(i, should_stop=should_stop) is None:
                return None
        return self.merge()

    # -- helpers -------------------------------------------------------------
    def _require_plan(self) -> ChunkPlan:
        if self.plan is None:
            self.prepare()
        assert self.plan is not None
        return self.plan

    def _driving_clips(self) -> tuple[np.ndarray, np.ndarray]:
        """The pose and hand clips, read by prepare() along with the plan."""
        self._require_plan()
        assert self._pose is not None and self._hand is not None
        return self._pose, self._hand

    def _emit(self, kind: str, chunk: int = -1, role: str = "", step: int = 0,
              steps: int = 0, message: str = "") -> None:
        plan = self.plan
        total = plan.num_chunks if plan else 0
        done = sum(self.is_done(i) for i in range(total)) if plan else 0
        clock = self.clock
        eta_chunk = eta_total = sps = None
        if clock is not None:
            sps = clock.seconds_per_step
            if steps:
                eta_chunk = clock.eta(steps - step)
            eta_total = clock.eta_total()
        self.progress(ProgressEvent(kind=kind, chunk=chunk, role=role, step=step, steps=steps,
                                    chunks_done=done, chunks_total=total,
                                    seconds_per_step=sps, eta_chunk=eta_chunk,
                                    eta_total=eta_total, message=message))


def load_chunk_conditions(path: Path, key: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    """A chunk's stored condition latents if written for ``key``; None if absent or stale."""
    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            if json.loads((f.metadata() or {}).get("key", "null")) != key:
                return None
            return {name: f.get_tensor(name) for name in ("pose", "hand")}
    except Exception:  # a torn or foreign file: encode again, never trust it
        return None


def _shapes(inputs: ChunkInputs) -> tuple:
    """What compiled code is specialised to: the shapes and dtypes of a chunk's inputs."""
    return tuple((tuple(t.shape), str(t.dtype)) for t in (
        inputs.cond, inputs.hand, inputs.ref, inputs.context_pos, inputs.context_neg))


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
