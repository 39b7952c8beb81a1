"""`posegen prompt`: a tiny random Qwen2.5-VL through the real loading path, and the keyword rule.

The tiny model folder is built here the way a real one is laid out (config.json,
safetensors weights, tokenizer, image processor, chat template), then loaded by the
same code as Qwen2.5-VL-7B-Instruct. Its tokenizer knows only a few words, none of
them a subject keyword, so its random output must be refused.
"""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.cli import main
from engine.inputs import describe as describe_mod
from engine.inputs.describe import MODEL_ENV, describe_image, load_describer
from engine.inputs.errors import InputError
from engine.inputs.prompt_check import check_prompt
from engine.prompt import KEYWORDS, PromptError, find_keyword

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORDS = ("a", "in", "red", "blue", "dress", "shirt", "stands", "park", "street", "light",
         "with", "long", "hair", "arms", "raised", "the", "and", "of", ".", ",")
SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
            "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
# ChatML, as Qwen's template renders a single user turn with an image.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def write_tiny_qwen(folder: Path) -> Path:
    """A randomly initialised Qwen2.5-VL (1 text layer, width 32) with its processor."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from engine.compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    vocab = {w: i for i, w in enumerate(("[UNK]", *WORDS))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok.add_special_tokens(list(SPECIALS))
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                 pad_token="<|endoftext|>", unk_token="[UNK]")
    ids = {t: hf.convert_tokens_to_ids(t) for t in SPECIALS}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112),
        tokenizer=hf, video_processor=Qwen2VLVideoProcessor(), chat_template=CHAT_TEMPLATE)
    config = Qwen2_5_VLConfig(
        text_config={"vocab_size": len(hf), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 1, "num_attention_heads": 2,
                     "num_key_value_heads": 1, "max_position_embeddings": 1024,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                         "mrope_section": [2, 2, 4]},
                     "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
                     "pad_token_id": ids["<|endoftext|>"]},
        vision_config={"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                       "out_hidden_size": 32, "fullatt_block_indexes": [0],
                       "window_size": 56},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    processor.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_qwen(tmp_path_factory.mktemp("tiny-qwen"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ref") / "ref.png"
    rng = np.random.default_rng(0)
    cv2.imwrite(str(path), rng.integers(0, 256, (80, 60, 3), dtype=np.uint8))
    return path


@pytest.fixture(scope="module")
def umt5_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint folder holding only the tiny umT5 tokenizer (all `prompt` reads)."""
    from engine.checkpoint.layout import TOKENIZER_DIR
    from engine.checkpoint.tiny_encoders import write_tiny_tokenizer

    root = tmp_path_factory.mktemp("ckpt")
    write_tiny_tokenizer(root / TOKENIZER_DIR)
    return root


def test_describe_runs_end_to_end_deterministically(tiny_qwen: Path, reference: Path) -> None:
    first = describe_image(reference, tiny_qwen, device="cpu", seed=42, max_new_tokens=12)
    again = describe_image(reference, tiny_qwen, device="cpu", seed=42, max_new_tokens=12)
    assert isinstance(first, str) and first == again
    words = first.replace(",", " ").replace(".", " ").split()  # the decoder glues punctuation
    assert set(words) <= set(WORDS) | {"[UNK]"}  # decoded through the processor
    sampled = describe_image(reference, tiny_qwen, device="cpu", seed=7, max_new_tokens=12,
                             sample=True)
    assert sampled == describe_image(reference, tiny_qwen, device="cpu", seed=7,
                                     max_new_tokens=12, sample=True)


def test_model_is_freed_after_use(tiny_qwen: Path, reference: Path) -> None:
    with load_describer(tiny_qwen, device="cpu") as describer:
        ref = weakref.ref(describer.model)
        describer.describe(reference, max_new_tokens=2)
    gc.collect()
    assert ref() is None


def test_output_without_keyword_is_refused(tiny_qwen: Path, reference: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "prompt.txt"
    rc = main(["prompt", str(reference), "--model", str(tiny_qwen), "--device", "cpu",
               "--max-new-tokens", "12", "--out", str(out)])
    captured = capsys.readouterr()
    text = captured.out.strip()
    assert out.read_text().strip() == text  # kept for editing
    with pytest.raises(PromptError):
        find_keyword(text)  # the tiny vocabulary has no keyword
    assert rc == 2
    assert "the generated prompt was refused" in captured.err
    assert ", ".join(KEYWORDS) in captured.err and f"--prompt-file {out}" in captured.err


def test_keyword_rule_on_good_text(umt5_ckpt: Path) -> None:
    from engine.checkpoint.encoders import load_tokenizer

    text = "A  young woman with long hair stands in a park; a man walks behind her."
    report = check_prompt(text)
    assert (report.keyword, report.token) == ("woman", None)
    assert report.prompt[report.char:report.char + 5] == "woman"
    report = check_prompt(text, umt5_ckpt)
    tokenizer = load_tokenizer(umt5_ckpt / "google" / "umt5-xxl")
    ids, _ = tokenizer(text)
    assert tokenizer.hf.convert_ids_to_tokens(int(ids[0, report.token])) == "▁woman"
    # Whole words: "human" and "woman's" neighbours do not count, the first keyword wins.
    assert check_prompt("a human boy, not a manly girl").keyword == "girl"
    with pytest.raises(PromptError, match="woman, girl, man, boy"):
        check_prompt("a human in a park")


def test_prompt_command_reports_keyword_token(tiny_qwen: Path, reference: Path,
                                              umt5_ckpt: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    seen = {}

    def fake(image: Path, model_dir: Path, **kwargs: object) -> str:  # stands in for Qwen
        seen.update(kwargs, model_dir=model_dir)
        return "A man in a blue shirt stands in the street."

    monkeypatch.setattr(describe_mod, "describe_image", fake)
    monkeypatch.setenv(MODEL_ENV, str(tiny_qwen))
    assert main(["prompt", str(reference), "--ckpt", str(umt5_ckpt), "--seed", "3"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "A man in a blue shirt stands in the street."
    assert "keyword: man (character 2, umT5 token 1)" in captured.err
    assert seen["seed"] == 3 and seen["model_dir"] == tiny_qwen


def test_missing_model_folder_names_both_ways(reference: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(MODEL_ENV, raising=False)
    assert main(["prompt", str(reference)]) == 2
    err = capsys.readouterr().err
    assert "--model DIR" in err and MODEL_ENV in err
    with pytest.raises(InputError, match=r"from --model\): model folder not found"):
        describe_image(reference, tmp_path / "nope")
    monkeypatch.setenv(MODEL_ENV, str(tmp_path))
    with pytest.raises(InputError, match=rf"config\.json \(from \${MODEL_ENV}\): missing"):
        describe_image(reference)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(InputError, match="cannot load Qwen2.5-VL from this folder"):
        describe_image(reference)
