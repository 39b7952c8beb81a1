"""Tiny encoder checkpoints through the real loaders, and their error paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine.checkpoint import encoders as enc
from engine.checkpoint.layout import (
    CheckpointError,
    CheckpointLayout,
    check_layout,
    resolve_checkpoint_dir,
)
from engine.checkpoint.tiny_encoders import write_tiny_encoders

TEXT_DIM = 32


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny_ckpt")
    write_tiny_encoders(root, seed=0, text_dim=TEXT_DIM)
    return root


@pytest.fixture(scope="session")
def layout(tiny_root: Path) -> CheckpointLayout:
    return CheckpointLayout(tiny_root)


@pytest.fixture(scope="session")
def tokenizer(layout: CheckpointLayout) -> enc.PromptTokenizer:
    return enc.load_tokenizer(layout.tokenizer)


def test_release_file_names(layout: CheckpointLayout) -> None:
    names = {p.relative_to(layout.root).as_posix() for p in layout.root.rglob("*") if p.is_file()}
    assert {"Wan2.1_VAE.pth", "models_t5_umt5-xxl-enc-bf16.pth",
            "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth",
            "google/umt5-xxl/tokenizer.json", "google/umt5-xxl/tokenizer_config.json",
            "google/umt5-xxl/spiece.model"} <= names
    assert not [n for n in names if ".tmp" in n]  # no leftovers of atomic writes


def test_vae_round_trip_shapes(layout: CheckpointLayout) -> None:
    vae = enc.load_vae(layout.vae)
    assert vae.model.dim == 8 and vae.model.z_dim == 16
    video = torch.rand(3, 17, 64, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    latents = enc.vae_encode(vae, video, "cpu", tiled=False)
    assert latents.shape == (16, 5, 8, 4)
    assert torch.isfinite(latents).all()
    decoded = enc.vae_decode(vae, latents, "cpu", tiled=False)
    assert decoded.shape == (3, 17, 64, 32)
    assert decoded.min() >= -1 and decoded.max() <= 1
    assert enc.vae_encode(vae, video, "cpu", tiled=True).shape == (16, 5, 8, 4)
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        enc.vae_encode(vae, video[:, :16], "cpu")


def test_text_encoder_zeroes_padding(layout: CheckpointLayout,
                                     tokenizer: enc.PromptTokenizer) -> None:
    t5 = enc.load_text_encoder(layout.text_encoder, "cpu", torch.float32)
    assert t5.num_heads == 2 and t5.num_layers == 2 and not t5.shared_pos
    assert t5.token_embedding.num_embeddings == tokenizer.vocab_size
    _, mask = tokenizer("a woman   dances")
    length = int(mask.sum())
    context = enc.encode_prompt(t5, tokenizer, "a woman   dances", "cpu")
    assert context.shape == (1, 512, TEXT_DIM)
    assert length == 5  # ▁a ▁woman ▁dance s </s>
    assert (context[0, length:] == 0).all()
    assert (context[0, :length].abs().sum(dim=-1) > 0).all()


def test_tokenizer_pads_and_ends_with_eos(tokenizer: enc.PromptTokenizer) -> None:
    ids, mask = tokenizer("  a woman \n dances ")
    assert ids.shape == mask.shape == (1, 512) and ids.dtype == torch.long
    length = int(mask.sum())
    tokens = tokenizer.hf.convert_ids_to_tokens(ids[0, :length].tolist())
    assert tokens == ["▁a", "▁woman", "▁dance", "s", "</s>"]
    assert (ids[0, length:] == 0).all()  # pad id 0


def test_keyword_token_lookup(tokenizer: enc.PromptTokenizer) -> None:
    text = tokenizer.clean("a  woman dances")
    assert text == "a woman dances"
    ids, _ = tokenizer(text)
    pos = text.index("woman")
    index = tokenizer.token_index_of_char(text, pos)
    assert tokenizer.hf.convert_ids_to_tokens([int(ids[0, index])]) == ["▁woman"]
    assert all(tokenizer.token_index_of_char(text, pos + i) == index for i in range(5))
    assert tokenizer.token_index_of_char(text, text.index("dances")) == index + 1
    # "dances" is ▁dance + s: the piece boundary inside a word is resolved too.
    assert tokenizer.token_index_of_char(text, text.index("dances") + 5) == index + 2


def test_keyword_lookup_through_cleaning(tokenizer: enc.PromptTokenizer) -> None:
    # Wan's cleaning (whitespace, ftfy, HTML entities) changes lengths before the keyword.
    raw = "\ufb01ne &amp;  \u201cgood\u201d\n woman dances"
    cleaned = tokenizer.clean(raw)
    assert cleaned == 'fine & "good" woman dances'
    index = tokenizer.token_index_of_char(raw, raw.index("woman"))
    assert index == tokenizer.token_index_of_char(cleaned, cleaned.index("woman"))
    ids, _ = tokenizer(raw)
    assert tokenizer.hf.convert_ids_to_tokens([int(ids[0, index])]) == ["▁woman"]


def test_human_is_not_split_into_man(tokenizer: enc.PromptTokenizer) -> None:
    text = "a human dances"
    ids, mask = tokenizer(text)
    tokens = tokenizer.hf.convert_ids_to_tokens(ids[0, :int(mask.sum())].tolist())
    assert "▁man" not in tokens and "man" not in tokens
    pos = text.index("man")
    index = tokenizer.token_index_of_char(text, pos)
    offsets = tokenizer.hf(text, return_offsets_mapping=True)["offset_mapping"]
    start, end = offsets[index]
    assert start <= pos < end and text[start:end] != "man"
    with pytest.raises(ValueError, match="not on a word"):
        tokenizer.token_index_of_char(text, 1)


def test_image_encoder_tokens(layout: CheckpointLayout) -> None:
    clip = enc.load_image_encoder(layout.image_encoder)
    assert clip.model.vision_heads == 16 and clip.model.vision_layers == 2
    image = torch.rand(3, 1, 64, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    tokens = enc.encode_image(clip, image, "cpu")
    assert tokens.shape == (1, 257, 1280)
    assert torch.allclose(tokens, enc.encode_image(clip, image.permute(1, 0, 2, 3), "cpu"))


def test_tiny_encoders_are_deterministic(tiny_root: Path, tmp_path: Path) -> None:
    write_tiny_encoders(tmp_path, seed=0, text_dim=TEXT_DIM)
    for name in ("Wan2.1_VAE.pth", "models_t5_umt5-xxl-enc-bf16.pth"):
        a = enc.load_state_dict_file(tiny_root / name)
        b = enc.load_state_dict_file(tmp_path / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    tok = "google/umt5-xxl/tokenizer.json"
    assert (tiny_root / tok).read_bytes() == (tmp_path / tok).read_bytes()
    t5 = enc.load_state_dict_file(tmp_path / "models_t5_umt5-xxl-enc-bf16.pth")
    assert all(v.dtype == torch.bfloat16 for v in t5.values())


def test_clip_file_looks_like_full_state_dict(layout: CheckpointLayout) -> None:
    sd = enc.load_state_dict_file(layout.image_encoder)
    assert "log_scale" in sd and any(k.startswith("textual.") for k in sd)
    assert sd["visual.pos_embedding"].shape == (1, 257, 1280)


# ----------------------------------------------------------------------------- errors


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="Wan2.1_VAE.pth.*not found"):
        enc.load_vae(tmp_path / "Wan2.1_VAE.pth")
    with pytest.raises(CheckpointError, match="umt5-xxl.*not found"):
        enc.load_tokenizer(tmp_path / "google" / "umt5-xxl")


def test_truncated_file_names_it(layout: CheckpointLayout, tmp_path: Path) -> None:
    data = layout.vae.read_bytes()
    bad = tmp_path / "Wan2.1_VAE.pth"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"Wan2\.1_VAE\.pth.*truncated"):
        enc.load_vae(bad)


def test_wrong_shape_names_file_and_key(layout: CheckpointLayout, tmp_path: Path) -> None:
    sd = enc.load_state_dict_file(layout.text_encoder)
    sd["blocks.1.ffn.fc2.weight"] = torch.zeros(TEXT_DIM, 65, dtype=torch.bfloat16)
    bad = tmp_path / "models_t5_umt5-xxl-enc-bf16.pth"
    torch.save(sd, bad)
    with pytest.raises(CheckpointError, match=r"enc-bf16\.pth.*blocks\.1\.ffn\.fc2\.weight"):
        enc.load_text_encoder(bad, "cpu", torch.float32)


def test_unexpected_and_missing_keys_listed(layout: CheckpointLayout, tmp_path: Path) -> None:
    sd = enc.load_state_dict_file(layout.image_encoder)
    sd["visual.extra.weight"] = torch.zeros(2)
    del sd["visual.post_norm.weight"]
    bad = tmp_path / "clip.pth"
    torch.save({"state_dict": sd}, bad)  # a wrapped dict is unwrapped first
    with pytest.raises(CheckpointError) as info:
        enc.load_image_encoder(bad)
    message = str(info.value)
    assert "clip.pth" in message and "post_norm.weight" in message and "extra.weight" in message


def test_vae_with_other_latent_width_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "Wan2.2_VAE.pth"
    torch.save({"model_state": {"encoder.conv1.weight": torch.zeros(8, 3, 3, 3, 3),
                                "conv2.weight": torch.zeros(48, 48, 1, 1, 1)}}, bad)
    with pytest.raises(CheckpointError, match="48 latent channels"):
        enc.load_vae(bad)


def test_not_a_state_dict(tmp_path: Path) -> None:
    bad = tmp_path / "models_t5_umt5-xxl-enc-bf16.pth"
    torch.save([1, 2, 3], bad)
    with pytest.raises(CheckpointError, match="enc-bf16.pth.*dict of tensors"):
        enc.load_text_encoder(bad)
    torch.save({"token_embedding.weight": torch.zeros(4, 4)}, bad)
    with pytest.raises(CheckpointError, match="blocks.0.attn.q.weight.*missing"):
        enc.load_text_encoder(bad)


def test_check_layout_lists_every_missing_file(tmp_path: Path, tiny_root: Path) -> None:
    with pytest.raises(CheckpointError) as info:
        check_layout(CheckpointLayout(tmp_path))
    message = str(info.value)
    for name in ("Wan2.1_VAE.pth", "models_t5_umt5-xxl-enc-bf16.pth", "google/umt5-xxl",
                 "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth", "720p-81f-base",
                 "720p-81f-cond"):
        assert name in message
    # Encoders present, DiT folders absent: only those are reported.
    with pytest.raises(CheckpointError) as info:
        check_layout(CheckpointLayout(tiny_root))
    message = str(info.value)
    assert "720p-81f-base" in message and "720p-81f-cond" in message
    assert "Wan2.1_VAE.pth" not in message
    (tmp_path / "720p-81f-base").mkdir()
    (tmp_path / "720p-81f-base" / "model_config.json").write_text(json.dumps({}))
    with pytest.raises(CheckpointError, match=r"720p-81f-base/\*\.bin"):
        check_layout(CheckpointLayout(tmp_path))


def test_resolve_checkpoint_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSEGEN_CKPT_PATH", raising=False)
    with pytest.raises(CheckpointError, match="--ckpt.*POSEGEN_CKPT_PATH.*make-tiny"):
        resolve_checkpoint_dir(None)
    assert resolve_checkpoint_dir(str(tmp_path)) == tmp_path
    monkeypatch.setenv("POSEGEN_CKPT_PATH", str(tmp_path))
    assert resolve_checkpoint_dir(None) == tmp_path
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint_dir(tmp_path / "nope")


def test_unloadable_tokenizer_folder(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot load the umT5 tokenizer"):
        enc.load_tokenizer(tmp_path)


def test_diffsynth_imports_through_compat() -> None:
    from engine.compat import import_diffsynth_module

    module = import_diffsynth_module("diffsynth.models.wan_video_vae")
    assert hasattr(module, "WanVideoVAE")
    import torchvision  # importable after the shim, whether or not it was needed

    assert torchvision.transforms is not None
