"""`posegen prompt`: describe the reference image with Qwen2.5-VL-7B-Instruct.

The model comes from a local folder (a copy of Qwen/Qwen2.5-VL-7B-Instruct): --model
or $QWEN25_VL_7B_INSTRUCT_PATH. It is loaded once per call and freed afterwards, so a
16 GB model does not stay resident next to the video models. Decoding is greedy by
default (the same image gives the same text); ``sample=True`` samples from a seeded
generator instead.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from engine.inputs.errors import InputError
from engine.media import read_image
from engine.option_paths import folder_from
from engine.prompt import KEYWORDS, clean_prompt

MODEL_ENV = "QWEN25_VL_7B_INSTRUCT_PATH"
# Caps the image tokens (28x28 pixels each after Qwen's 2x2 merge): a 720x1280 reference
# is about 1,200 tokens, well under this.
MAX_PIXELS = 1536 * 28 * 28

INSTRUCTION = (
    "Write a caption of this image for a text-to-video model, as one paragraph of about "
    "80 to 120 words in plain English. Begin with the person and call them exactly one of "
    f"these words: {', '.join(KEYWORDS)} (pick by apparent age and gender), e.g. 'A young "
    "woman with ...'. Describe their appearance (hair, face, build), their clothing "
    "(garments, colours, materials, shoes, accessories) and their pose (stance, arms, hands, "
    "head, gaze). Then describe the background and setting, the lighting and the framing. "
    "Only state what is visible. No lists, headings, quotes or line breaks."
)


def resolve_model_dir(path: str | os.PathLike[str] | None) -> Path:
    """--model if given, else $QWEN25_VL_7B_INSTRUCT_PATH; errors say how to set one."""
    folder, source = folder_from(
        path, "--model", MODEL_ENV, error=InputError,
        none_given=(f"no Qwen2.5-VL-7B-Instruct model folder: pass --model DIR or set "
                    f"{MODEL_ENV} to a local copy of Qwen/Qwen2.5-VL-7B-Instruct (config.json, "
                    "*.safetensors, tokenizer and preprocessor files); or write the prompt "
                    "yourself"),
        not_a_folder="{folder} (from {source}): model folder not found; point it at a "
                     "local copy of Qwen/Qwen2.5-VL-7B-Instruct")
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder / 'config.json'} (from {source}): missing; the folder must "
                         "be a full copy of Qwen/Qwen2.5-VL-7B-Instruct")
    return folder


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Describer:
    """A loaded model and processor; use through :func:`load_describer`."""

    def __init__(self, model: Any, processor: Any, device: torch.device) -> None:
        self.model = model
        self.processor = processor
        self.device = device

    @torch.no_grad()
    def describe(self, image_path: str | os.PathLike[str], seed: int = 42,
                 max_new_tokens: int = 300, sample: bool = False) -> str:
        from PIL import Image
        from qwen_vl_utils import process_vision_info

        image = Image.fromarray(read_image(image_path))  # errors name the file
        messages = [{"role": "user", "content": [
            {"type": "image", "image": image, "max_pixels": MAX_PIXELS},
            {"type": "text", "text": INSTRUCTION},
        ]}]
        text = self.processor.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=True)
        patch = int(getattr(self.processor.image_processor, "patch_size", 14))
        images, videos = process_vision_info(messages, image_patch_size=patch)
        inputs = self.processor(text=[text], images=images, videos=videos, padding=True,
                                return_tensors="pt").to(self.device)
        torch.manual_seed(seed)
        if self.device.type == "cuda":
            torch.cuda.manual_seed_all(seed)
        # Explicit settings override the model's generation_config (which samples).
        options: dict[str, Any] = {"do_sample": sample, "max_new_tokens": max_new_tokens,
                                   "repetition_penalty": 1.05}
        if sample:
            options.update(temperature=0.7, top_p=0.9, top_k=50)
        else:
            options.update(temperature=None, top_p=None, top_k=None)
        out = self.model.generate(**inputs, **options)
        new_tokens = out[:, inputs["input_ids"].shape[1]:]
        decoded = self.processor.batch_decode(new_tokens, skip_special_tokens=True,
                                              clean_up_tokenization_spaces=False)[0]
        return clean_prompt(decoded)


@contextlib.contextmanager
def load_describer(model_dir: str | os.PathLike[str] | None = None, device: str = "auto",
                   dtype: torch.dtype | None = None) -> Iterator[Describer]:
    """Load Qwen2.5-VL once; on exit free it (and the GPU cache) whatever happened."""
    from engine.compat import ensure_torchvision_importable

    folder = resolve_model_dir(model_dir)
    dev = pick_device(device)
    if dtype is None:
        dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    ensure_torchvision_importable()  # qwen_vl_utils and the processor import torchvision
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    describer: Describer | None = None
    processor: Any = None
    model: Qwen2_5_VLForConditionalGeneration | None = None
    try:
        try:
            processor = AutoProcessor.from_pretrained(str(folder), local_files_only=True)
            model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
                str(folder), dtype=dtype, local_files_only=True)
        except Exception as exc:  # transformers raises many types for a bad folder
            raise InputError(f"{folder}: cannot load Qwen2.5-VL from this folder "
                             f"({type(exc).__name__}: {exc}); it must be a full local copy "
                             "of Qwen/Qwen2.5-VL-7B-Instruct") from exc
        # transformers wraps .to in functools.wraps(nn.Module.to), which mypy reads as
        # unbound: it takes ``dev`` for ``self``.
        model.to(dev).eval()  # type: ignore[arg-type]
        describer = Describer(model, processor, dev)
        yield describer
    finally:
        if describer is not None:
            describer.model = describer.processor = None
        describer = processor = model = None  # noqa: F841 - drop every reference
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()


def describe_image(image_path: str | os.PathLike[str],
                   model_dir: str | os.PathLike[str] | None = None, device: str = "auto",
                   seed: int = 42, max_new_tokens: int = 300, sample: bool = False) -> str:
    """One paragraph describing the person and background; the model is freed before return."""
    read_image(image_path)  # a bad path fails here, not after minutes of model loading
    with load_describer(model_dir, device) as describer:
        return describer.describe(image_path, seed=seed, max_new_tokens=max_new_tokens,
                                  sample=sample)
