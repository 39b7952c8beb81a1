"""Tiny random stand-ins for the release's encoder files, for tests and demos.

Same file names and state-dict keys as the release, so the real loaders read them;
only the sizes are small (except the CLIP width, which the DiT's image MLP expects
to be 1280 with 257 tokens). Deterministic for a given seed.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from engine.atomic import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text
from engine.checkpoint.layout import CheckpointLayout
from engine.compat import import_diffsynth_module

TINY_VAE_DIM = 8
TINY_T5 = dict(dim_attn=32, dim_ffn=64, num_heads=2, num_layers=2, num_buckets=32)
TINY_CLIP = dict(vision_dim=1280, image_size=224, patch_size=14, vision_layers=2,
                 vision_mlp_ratio=0.1, vision_heads=16, embed_dim=16)
# Whole pieces for the keyword nouns. With the "▁" they only match at a word start,
# so "human" is not split around a "man" piece.
KEYWORD_PIECES = ["▁woman", "▁girl", "▁man", "▁boy", "▁Woman", "▁Girl", "▁Man", "▁Boy"]


def _save_tensors(target: Path, sd: dict[str, Tensor]) -> None:
    with atomic_path(target, suffix=".pth") as tmp:
        torch.save({k: v.detach().contiguous().clone() for k, v in sd.items()}, tmp)


def _seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    # Fork the RNG so writing tiny weights does not disturb the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def write_tiny_vae(path: Path, seed: int = 0, dim: int = TINY_VAE_DIM) -> None:
    vae_mod = import_diffsynth_module("diffsynth.models.wan_video_vae")
    model = _seeded(seed, lambda: vae_mod.VideoVAE_(dim=dim, z_dim=16))
    _save_tensors(path, model.state_dict())


def write_tiny_text_encoder(path: Path, vocab: int, text_dim: int, seed: int = 0) -> None:
    t5_mod = import_diffsynth_module("diffsynth.models.wan_video_text_encoder")
    model = _seeded(seed, lambda: t5_mod.WanTextEncoder(
        vocab=vocab, dim=text_dim, shared_pos=False, dropout=0.0, **TINY_T5))
    # The release file is bf16, as its name says.
    _save_tensors(path, {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()})


def write_tiny_image_encoder(path: Path, seed: int = 0) -> None:
    clip_mod = import_diffsynth_module("diffsynth.models.wan_video_image_encoder")
    model = _seeded(seed, lambda: clip_mod.clip_xlm_roberta_vit_h_14(
        pretrained=False, return_transforms=False, return_tokenizer=False, **TINY_CLIP))
    gen = torch.Generator().manual_seed(seed)
    # A few small textual.* tensors so the file looks like the full CLIP state dict.
    textual = {"textual.token_embedding.weight": (16, 8), "textual.type_embedding.weight": (1, 8),
               "textual.pos_embedding.weight": (16, 8), "textual.norm.weight": (8,),
               "textual.norm.bias": (8,), "textual.head.0.weight": (8, 8),
               "textual.head.2.weight": (16, 8)}
    sd = dict(model.state_dict())  # visual.* and log_scale
    sd.update({k: torch.randn(shape, generator=gen) * 0.02 for k, shape in textual.items()})
    # fp16 halves the file (~30 MB); the loader casts to the dtype asked for.
    _save_tensors(path, {k: v.to(torch.float16) for k, v in sd.items()})


# ----------------------------------------------------------------------------- tokenizer

_SUBJECTS = ["a woman", "a young woman", "an old woman", "a man", "an old man", "a tall man",
             "a girl", "a little girl", "a boy", "a small boy", "the woman", "the man",
             "the girl", "the boy", "a dancer", "a human figure", "an athlete", "a singer",
             "a child", "a person", "Woman", "Man", "Girl", "Boy"]
_LOOKS = ["wearing a red dress", "in a blue shirt", "with long black hair",
          "wearing jeans and white sneakers", "in a yellow jacket", "with short grey hair",
          "wearing a straw hat", "in a green skirt", "wearing glasses", "in a white coat",
          "with curly brown hair", "wearing a black suit", "in a striped sweater", "barefoot",
          "in a purple hoodie", "with a ponytail"]
_ACTIONS = ["dances", "walks", "runs", "jumps", "spins", "waves", "stands still", "smiles",
            "sits down", "poses", "stretches", "claps", "turns around", "raises both arms",
            "kicks", "bows", "steps forward", "leans back", "skips", "twirls slowly",
            "performs a hip hop routine", "does ballet", "practices yoga", "sways gently"]
_PLACES = ["in a park", "on a stage", "on the beach", "in a studio", "in the street",
           "in a kitchen", "under the trees", "near a river", "in front of a white wall",
           "at night", "in the snow", "on a rooftop", "in a living room", "by the sea",
           "in a forest", "on a wooden floor", "in a gym", "under a bridge", "in a city square"]
_EXTRAS = ["The camera is still.", "Soft light falls on the scene.", "The background is "
           "blurred.", "Bright sunlight.", "The video is high quality, 4K, 60 fps.",
           "Slow motion.", "Warm evening colors.", "A crowd watches quietly.",
           "Music plays in the background.", "Leaves move in the wind.", "Full body shot.",
           "Close-up of the face!", "Is it raining? Yes; a little.", ""]
# Every ASCII letter, digit and common mark, so ordinary prompts rarely hit <unk>.
_COVERAGE = ["ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz 0123456789",
             "Quick zebras jive, vexing fog; (wax) [box] {kiln} \"quote\" 'apostrophe' - / : % &"]


def _training_lines(seed: int, count: int = 400) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(count):
        line = " ".join([rng.choice(_SUBJECTS), rng.choice(_LOOKS), rng.choice(_ACTIONS),
                         rng.choice(_PLACES) + ".", rng.choice(_EXTRAS)]).strip()
        lines.append(line[0].upper() + line[1:])
    return lines + _COVERAGE * 3


def _train_sentencepiece(seed: int) -> bytes:
    import sentencepiece as spm

    model = io.BytesIO()
    # pad 0 / eos 1 / unk 2 and no BOS, as in umT5. "identity" normalization because
    # the NFKC table cannot be copied into tokenizer.json without protobuf.
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_training_lines(seed)), model_writer=model,
        model_type="unigram", vocab_size=200, hard_vocab_limit=False,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, normalization_rule_name="identity",
        user_defined_symbols=KEYWORD_PIECES, character_coverage=1.0, num_threads=1,
        minloglevel=2)
    proto = model.getvalue()
    sp = spm.SentencePieceProcessor(model_proto=proto)
    pieces = sp.encode("a woman dances", out_type=str)
    if "▁woman" not in pieces:
        raise RuntimeError(f"tiny tokenizer splits 'woman': {pieces}")
    return proto


def write_tiny_tokenizer(folder: Path, seed: int = 0) -> int:
    """Write spiece.model, tokenizer.json and tokenizer_config.json; return the vocab size."""
    import sentencepiece as spm
    from transformers import T5Tokenizer

    proto = _train_sentencepiece(seed)
    sp = spm.SentencePieceProcessor(model_proto=proto)
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    # transformers 5 ignores vocab_file for T5 fast tokenizers: build from the pieces.
    hf = T5Tokenizer(vocab=vocab, extra_ids=0)
    if len(hf) != len(vocab):
        raise RuntimeError(f"fast tokenizer has {len(hf)} tokens, sentencepiece {len(vocab)}")
    atomic_write_bytes(folder / "spiece.model", proto)
    atomic_write_text(folder / "tokenizer.json", hf.backend_tokenizer.to_str())
    atomic_write_json(folder / "tokenizer_config.json", {
        "tokenizer_class": "T5Tokenizer", "eos_token": "</s>", "unk_token": "<unk>",
        "pad_token": "<pad>", "extra_ids": 0, "additional_special_tokens": []})
    return len(vocab)


def write_tiny_encoders(root: Path, seed: int = 0, text_dim: int = 32) -> None:
    """Write the four release encoder entries under ``root`` at tiny sizes.

    ``text_dim`` is the T5 width, which must equal the tiny DiT's ``text_dim``.
    """
    layout = CheckpointLayout(Path(root))
    vocab = write_tiny_tokenizer(layout.tokenizer, seed)
    write_tiny_text_encoder(layout.text_encoder, vocab, text_dim, seed)
    write_tiny_vae(layout.vae, seed)
    write_tiny_image_encoder(layout.image_encoder, seed)
