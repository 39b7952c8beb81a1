"""The models one worker holds: encoders once per job, one DiT at a time."""

from __future__ import annotations

import gc

import torch

from engine.budget import (
    AUTO,
    Budget,
    BudgetError,
    Placement,
    apply_budget,
    auto_budget,
    fits_whole,
    resident_parameters,
    streamed_bytes,
)
from engine.checkpoint import encoders
from engine.checkpoint.dit_loader import load_dit, read_config
from engine.checkpoint.layout import CheckpointLayout
from engine.compiler import CompileDecision, compile_blocks, decide, eager_blocks
from engine.models.dit import PoseGenDiT
from engine.pinned_arena import PinnedArena
from engine.progress import PhaseClock


class ModelSet:
    def __init__(self, layout: CheckpointLayout, device: str, dtype: torch.dtype,
                 budget: Budget, vae_tiling: str = "release", n_tokens: int = 0,
                 compile: str = "off") -> None:
        self.layout = layout
        self.device = torch.device(device)
        self.dtype = dtype
        self.budget = budget
        self.n_tokens = n_tokens  # tokens per DiT forward, for -p auto
        self.resolved_budget: int | None = None  # what -p auto chose
        self.predicted_peak: int | None = None
        self.vae_tiling = vae_tiling  # "release" (tiles as the release) or "none"
        self.compile = compile  # the --compile setting: auto, on or off (engine/compiler.py)
        # Whether the DiT last returned by dit() runs compiled blocks, and why (or why not).
        self.compile_decision = CompileDecision(False, "no DiT loaded")
        # (DiT kind, input shapes) already compiled in this process (see compile_for).
        self._compiled_for: set[tuple] = set()
        self._vae = None
        self._tokenizer: encoders.PromptTokenizer | None = None
        # The DiTs held, by kind: (model, placement, resolved budget, predicted peak,
        # compile decision).
        self._dits: dict[str, tuple[PoseGenDiT, Placement | None, int | None, int | None,
                                    CompileDecision]] = {}
        self.placement: Placement | None = None
        self.dit_switches = 0
        # Seconds of each loading step in this process (T5, CLIP, VAE, DiT read / LoRA
        # merge / build / placement), summed over loads: what a chunk's "loading" was.
        self.load_seconds: dict[str, float] = {}
        # Waits for the device's queued work, so a timed phase is charged what it queued.
        self.sync = ((lambda: torch.cuda.synchronize(self.device))
                     if self.device.type == "cuda" else None)

    def _timed(self) -> PhaseClock:
        return PhaseClock(sync=self.sync, seconds=self.load_seconds)

    @property
    def vae(self):
        if self._vae is None:
            with self._timed().phase("vae_load"):
                self._vae = encoders.load_vae(self.layout.vae, device=self.device,
                                              dtype=self.vae_dtype)
        return self._vae

    @property
    def vae_dtype(self) -> torch.dtype:
        # The release runs the VAE in the pipeline's dtype, as every other model.
        return self.dtype

    def encode_video(self, video: torch.Tensor, tiled: bool = True) -> torch.Tensor:
        """(3, F, H, W) in [-1, 1] -> (1, 16, latent F, H/8, W/8) on the device.

        ``tiled``: the release tiles condition clips and encodes the reference image
        whole; the session's ``vae_tiling`` "none" turns the tiling off everywhere.
        """
        latents = encoders.vae_encode(self.vae, video.to(self.vae_dtype), self.device,
                                      tiled and self.vae_tiling == "release")
        return latents.unsqueeze(0).to(self.device, self.dtype)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        video = encoders.vae_decode(self.vae, latents[0].to(self.vae_dtype), self.device,
                                    self.vae_tiling == "release")
        return video.float().cpu()

    @property
    def tokenizer(self) -> encoders.PromptTokenizer:
        """The umT5 tokenizer (loaded once; cheap, so prompts are checked before the T5)."""
        if self._tokenizer is None:
            with self._timed().phase("tokenizer_load"):
                self._tokenizer = encoders.load_tokenizer(self.layout.tokenizer)
        return self._tokenizer

    def encode_texts(self, texts: list[str]) -> tuple[list[torch.Tensor], object]:
        """T5 features of each text, and the tokenizer (for keyword positions).

        The text encoder is freed afterwards: at full size it is 11 GB the DiT needs.
        """
        clock = self._timed()
        tokenizer = self.tokenizer
        with clock.phase("t5_load"):
            t5 = encoders.load_text_encoder(self.layout.text_encoder, device=self.device,
                                            dtype=self.dtype)
        with clock.phase("t5_encode"), torch.no_grad():
            feats = [encoders.encode_prompt(t5, tokenizer, t, self.device).float().cpu()
                     for t in texts]
        del t5
        self._free()
        return feats, tokenizer

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """CLIP tokens (1, 257, 1280) of the reference image (3, 1, H, W) in [-1, 1]."""
        clock = self._timed()
        with clock.phase("clip_load"):
            clip = encoders.load_image_encoder(self.layout.image_encoder, device=self.device,
                                               dtype=self.dtype)
        with clock.phase("clip_encode"), torch.no_grad():
            tokens = encoders.encode_image(clip, image.to(self.dtype), self.device).float().cpu()
        del clip
        self._free()
        return tokens

    @property
    def loaded_dit(self) -> str | None:
        """The DiT kind that a chunk of the other kind would have to load over.

        None when no DiT is loaded, and when both are held: then no kind costs a load.
        """
        if len(self._dits) != 1:
            return None
        return next(iter(self._dits))

    def dit(self, kind: str) -> PoseGenDiT:
        """The base or cond DiT; loading it keeps the other one only where both fit.

        Under ``-p auto`` or ``-p none`` on a GPU, the other DiT stays when this one fits
        entirely beside it (the same prediction as ``-p auto``: weights, a forward's
        activations and the margin): switching between them is then free. Otherwise,
        and under an explicit ``-p`` (a budget per DiT), the other is dropped first.
        """
        held = self._dits.get(kind)
        if held is None:
            if self._dits and not self._fits_beside(kind):
                self.dit_switches += 1
                self._dits.clear()
                self._free()
            model, placement, budget, peak = self._load_dit(kind)
            streamed = placement.streamed_params if placement is not None else 0
            decision = decide(self.compile, self.device, streamed)
            if decision.compiled:
                compile_blocks(model)  # lazily: the code compiles at the first forward
            held = (model, placement, budget, peak, decision)
            self._dits[kind] = held
        self.placement, self.resolved_budget, self.predicted_peak, self.compile_decision = \
            held[1:]
        return held[0]

    def compile_for(self, kind: str, shapes: tuple) -> bool:
        """True the first time the ``kind`` DiT runs compiled at ``shapes`` in this process:
        the caller then warms it up (compiling, or loading the compiler's cache) as its own
        timed phase. False for an eager DiT and for shapes already compiled."""
        held = self._dits.get(kind)
        if held is None or not held[4].compiled or (kind, shapes) in self._compiled_for:
            return False
        self._compiled_for.add((kind, shapes))
        return True

    def run_eager(self, kind: str, reason: str) -> None:
        """Run the ``kind`` DiT's blocks eager from now on (its compile failed)."""
        held = self._dits.get(kind)
        if held is None:
            return
        eager_blocks(held[0])
        decision = CompileDecision(False, reason)
        self._dits[kind] = (*held[:4], decision)
        self.compile_decision = decision

    def _load_dit(self, kind: str) -> tuple[PoseGenDiT, Placement | None, int | None,
                                             int | None]:
        folder = self.layout.dit_dir(kind)
        if self.device.type == "cpu":
            model = load_dit(folder, device="cpu", dtype=self.dtype, seconds=self.load_seconds)
            return model, None, None, None
        # The budget is decided on the model's shapes, before reading: each weight then
        # goes straight from the file to the GPU or to pinned host memory.
        shape_only = self._shapes(kind)
        budget: int | None
        peak: int | None = None
        if self.budget == AUTO:
            budget, peak = auto_budget(shape_only, self.dtype, *self._free_memory(),
                                       self.n_tokens)
        elif isinstance(self.budget, str):
            raise BudgetError(f"-p {self.budget!r}: give ModelSet a parsed budget "
                              f"(parse_budget: a parameter count, {AUTO!r} or None)")
        else:
            budget = self.budget
        resident = resident_parameters(shape_only, budget)
        arena = PinnedArena(streamed_bytes(shape_only, budget, self.dtype))
        model = load_dit(folder, device=self.device, dtype=self.dtype,
                         seconds=self.load_seconds, resident=resident.__contains__,
                         host=arena.take)
        arena.close()
        with self._timed().phase("dit_placement"):
            placement = apply_budget(model, budget, self.device, self.dtype)
        return model, placement, budget, peak

    def _fits_beside(self, kind: str) -> bool:
        if self.device.type != "cuda" or self.budget not in (None, AUTO):
            return False
        return fits_whole(self._shapes(kind), self.dtype, *self._free_memory(), self.n_tokens)

    def _shapes(self, kind: str) -> PoseGenDiT:
        """The DiT of ``kind`` on the meta device: its layer sizes, no weights."""
        with torch.device("meta"):
            return PoseGenDiT(read_config(self.layout.dit_dir(kind)))

    def _free_memory(self) -> tuple[int, int]:
        """(free, total) bytes of the device for a new DiT."""
        free, total = torch.cuda.mem_get_info(self.device)
        # Memory this process's allocator holds but does not use is free for the DiT too.
        free += torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
        return free, total

    def release(self) -> None:
        self._vae = None
        self._dits.clear()
        self._compiled_for.clear()
        self._free()

    def _free(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
