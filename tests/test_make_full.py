"""`posegen ckpt make-full`: the release layout at the real sizes with random weights.

Written here at a reduced size through the real CLI entry and read back through the real
loaders; the full-size plan is checked with --dry-run against the architecture formulas.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
import torch

from engine.checkpoint.dit_loader import default_lora_targets, load_dit
from engine.checkpoint.encoders import (
    load_image_encoder,
    load_state_dict_file,
    load_text_encoder,
    load_tokenizer,
    load_vae,
)
from engine.checkpoint.layout import CheckpointLayout, check_layout
from engine.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Reduced sizes: the tiny preset with a few explicit overrides (all on the same code path).
DIT_LAYERS, LORA_RANK, T5_LAYERS, CLIP_LAYERS, VAE_DIM = 3, 8, 3, 2, 16
ARGS = ["--scale", "tiny", "--dit-layers", str(DIT_LAYERS), "--lora-rank", str(LORA_RANK),
        "--t5-layers", str(T5_LAYERS), "--clip-layers", str(CLIP_LAYERS),
        "--vae-dim", str(VAE_DIM), "--shard-mb", "1"]  # 1 MB: one block per DiT shard
TINY_DIT_DIM, TINY_DIT_HEADS, TINY_DIT_FFN, TINY_T5_DIM, TINY_T5_VOCAB = 256, 2, 512, 128, 512
TENSOR_FILES = ("Wan2.1_VAE.pth", "models_t5_umt5-xxl-enc-bf16.pth",
                "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth")


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["ckpt", "make-full", *argv])
    return rc, out.getvalue(), err.getvalue()


def write(root: Path, *extra: str) -> str:
    rc, out, err = run_cli(str(root), *ARGS, *extra)
    assert rc == 0, err
    return out


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("full") / "ckpt"
    return root, write(root)


def shards(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.bin"))


def files_state(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file() and p.name != "make-full.json"}


def test_loads_back_through_the_real_loaders(ckpt: tuple[Path, str]) -> None:
    root, out = ckpt
    layout = CheckpointLayout(root)
    check_layout(layout)
    assert "RANDOM" in out and "RANDOM" in (root / "README-FULL.txt").read_text()

    vae = load_vae(layout.vae)
    assert vae.model.encoder.conv1.weight.shape[0] == VAE_DIM
    t5 = load_text_encoder(layout.text_encoder)
    assert (t5.dim, t5.num_layers, t5.token_embedding.num_embeddings, t5.num_heads,
            t5.dim_ffn) == (TINY_T5_DIM, T5_LAYERS, TINY_T5_VOCAB, TINY_T5_DIM // 64,
                            TINY_T5_DIM * 5 // 2)
    assert not t5.shared_pos and t5.blocks[0].pos_embedding.embedding.weight.shape == (32, 2)
    tokenizer = load_tokenizer(layout.tokenizer)
    ids, _ = tokenizer("A woman in a red dress dances on a stage.")
    assert int(ids.max()) < TINY_T5_VOCAB
    clip = load_image_encoder(layout.image_encoder)
    assert len(clip.model.visual.transformer) == CLIP_LAYERS
    assert clip.model.visual.patch_embedding.weight.shape == (1280, 3, 14, 14)
    assert clip.model.visual.pos_embedding.shape == (1, 257, 1280)
    for kind in ("base", "cond"):
        dit = load_dit(layout.dit_dir(kind))
        cfg = dit.cfg
        assert (cfg.dim, cfg.num_layers, cfg.num_heads, cfg.ffn_dim, cfg.text_dim) == (
            TINY_DIT_DIM, DIT_LAYERS, TINY_DIT_HEADS, TINY_DIT_FFN, TINY_T5_DIM)
        assert (cfg.in_dim, cfg.out_dim, cfg.freq_dim, cfg.patch_size, cfg.eps) == (
            36, 16, 256, (1, 2, 2), 1e-6)
        assert cfg.has_image_input and not cfg.has_image_pos_emb
        assert cfg.shift_ref_pos and cfg.use_hand and cfg.use_hand_proj
        assert len(dit.blocks) == DIT_LAYERS


def test_files_are_bf16_random_and_sized_as_planned(ckpt: tuple[Path, str]) -> None:
    root, _ = ckpt
    paths = [root / name for name in TENSOR_FILES] + shards(root / "720p-81f-base")
    for path in paths:
        sd = torch.load(path, map_location="cpu", weights_only=True)
        assert {v.dtype for v in sd.values()} == {torch.bfloat16}, path
        assert all(bool(v.abs().sum() > 0) for v in sd.values()), path
        data = sum(v.numel() * v.element_size() for v in sd.values())
        # The free-space check counts data + 1 KiB per tensor + 64 KiB per file.
        assert data < path.stat().st_size <= data + 1024 * len(sd) + 65536, path
    t5 = load_state_dict_file(root / TENSOR_FILES[1])
    assert abs(float(t5["blocks.0.attn.q.weight"].float().std()) - 0.02) < 0.002
    assert abs(float(t5["norm.weight"].float().mean()) - 1.0) < 0.01


def test_cond_is_a_hard_link_by_default(ckpt: tuple[Path, str]) -> None:
    root, out = ckpt
    base, cond = shards(root / "720p-81f-base"), shards(root / "720p-81f-cond")
    assert len(base) == DIT_LAYERS + 1  # everything outside the blocks, then one per block
    assert [p.name for p in base] == [p.name for p in cond]
    for b, c in zip(base, cond, strict=True):
        assert b.stat().st_ino == c.stat().st_ino and b.stat().st_nlink == 2
    assert "720p-81f-cond/ = hard links to the base shards" in out


def test_lora_pairs_sit_only_on_2d_weights(ckpt: tuple[Path, str]) -> None:
    root, _ = ckpt
    raw: dict[str, torch.Tensor] = {}
    for path in shards(root / "720p-81f-base"):
        raw.update(torch.load(path, map_location="cpu", weights_only=True))
    assert all(k.startswith("pipe.dit.") for k in raw)
    suffix_a, suffix_b = ".lora_A.default.weight", ".lora_B.default.weight"
    layers = {k[len("pipe.dit."):-len(suffix_a)] for k in raw if k.endswith(suffix_a)}
    assert {k[len("pipe.dit."):-len(suffix_b)] for k in raw if k.endswith(suffix_b)} == layers
    assert all("lora" not in k or k.endswith((suffix_a, suffix_b)) for k in raw)
    cfg = load_dit(root / "720p-81f-base").cfg
    assert layers == set(default_lora_targets(cfg))
    for layer in layers:
        w = raw[f"pipe.dit.{layer}.base_layer.weight"]
        a, b = raw[f"pipe.dit.{layer}{suffix_a}"], raw[f"pipe.dit.{layer}{suffix_b}"]
        assert w.dim() == 2, layer
        assert a.shape == (LORA_RANK, w.shape[1]) and b.shape == (w.shape[0], LORA_RANK)
        assert f"pipe.dit.{layer}.weight" not in raw
    assert "pipe.dit.hand_patch_embedding.1.weight" in raw  # 5-D: plain, no LoRA


def test_rerun_skips_complete_files(ckpt: tuple[Path, str]) -> None:
    root, _ = ckpt
    before = files_state(root)
    out = write(root)
    assert files_state(root) == before
    assert "0 of 14 entries to write" in out and out.count("already complete, skipped") == 14


def test_other_settings_or_foreign_files_are_refused(ckpt: tuple[Path, str],
                                                     tmp_path: Path) -> None:
    root, _ = ckpt
    rc, _, err = run_cli(str(root), *ARGS, "--seed", "1")
    assert rc == 2 and "other settings (seed: 0 -> 1)" in err
    foreign = tmp_path / "release"
    foreign.mkdir()
    (foreign / "Wan2.1_VAE.pth").write_bytes(b"weights")
    rc, _, err = run_cli(str(foreign), *ARGS)
    assert rc == 2 and "not written by make-full" in err and len(err.splitlines()) == 1
    assert (foreign / "Wan2.1_VAE.pth").read_bytes() == b"weights"


def test_distinct_cond_and_clip_text_tower(tmp_path: Path) -> None:
    root = tmp_path / "ckpt"
    out = write(root, "--distinct-cond", "--clip-textual")
    assert "720p-81f-cond/ = distinct random weights" in out
    base, cond = shards(root / "720p-81f-base"), shards(root / "720p-81f-cond")
    assert len(base) == len(cond)
    for b, c in zip(base, cond, strict=True):
        assert not os.path.samefile(b, c)
        sb = torch.load(b, map_location="cpu", weights_only=True)
        sc = torch.load(c, map_location="cpu", weights_only=True)
        assert list(sb) == list(sc)
        assert not any(torch.equal(sb[k], sc[k]) for k in sb if sb[k].numel() > 16)
    a, b = load_dit(root / "720p-81f-base"), load_dit(root / "720p-81f-cond")
    assert not torch.equal(a.blocks[0].self_attn.q.weight, b.blocks[0].self_attn.q.weight)
    clip_file = root / TENSOR_FILES[2]
    sd = load_state_dict_file(clip_file)
    assert "textual.token_embedding.weight" in sd and "textual.blocks.0.attn.q.weight" in sd
    assert {v.dtype for v in sd.values()} == {torch.bfloat16}
    assert len(load_image_encoder(clip_file).model.visual.transformer) == CLIP_LAYERS


def test_interrupted_run_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "ckpt"
    real_save = torch.save

    def killed_mid_shard(obj: object, path: Path) -> None:
        if "00002-of" in Path(path).name:
            buf = io.BytesIO()
            real_save(obj, buf)
            Path(path).write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
            raise KeyboardInterrupt
        real_save(obj, path)

    monkeypatch.setattr(torch, "save", killed_mid_shard)
    rc, _, err = run_cli(str(root), *ARGS)
    monkeypatch.undo()
    assert rc == 130 and "run the same command again" in err
    base = root / "720p-81f-base"
    name = "pytorch_model-00002-of-00004.bin"
    assert (base / "pytorch_model-00001-of-00004.bin").is_file()
    assert not (base / name).exists() and not list(base.glob(".*tmp*"))
    manifest = json.loads((root / "make-full.json").read_text())
    assert f"720p-81f-base/{name}" not in manifest["complete"]
    # What a SIGKILL leaves: a torn temp file, never the final name.
    (base / f".{name}.abc123.tmp").write_bytes(b"torn")
    # And a finished file that was damaged later (size no longer the recorded one).
    vae = root / "Wan2.1_VAE.pth"
    vae.write_bytes(vae.read_bytes()[:1000])
    before = files_state(root)

    out = write(root)
    after = files_state(root)
    assert not list(base.glob(".*tmp*"))
    assert after[str(Path("720p-81f-base") / "pytorch_model-00001-of-00004.bin")] == before[
        str(Path("720p-81f-base") / "pytorch_model-00001-of-00004.bin")]
    assert after["Wan2.1_VAE.pth"] != before["Wan2.1_VAE.pth"]
    assert re.search(rf"720p-81f-base/{name} .* written", out)
    load_vae(vae)
    load_dit(base)
    load_dit(root / "720p-81f-cond")


def test_low_disk_space_is_refused_before_writing(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 10**12 - 5000, 5000))
    root = tmp_path / "ckpt"
    rc, out, err = run_cli(str(root), *ARGS)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "not enough free disk space" in err and str(root) in err and "5.00 KB are free" in err
    need = int(re.search(r"\((\d+) bytes\)", err).group(1))
    assert need > 50e6  # the reduced checkpoint's ~60 MB, counted before anything is written
    assert not root.exists()


def test_dry_run_writes_nothing_and_counts_the_full_size(tmp_path: Path) -> None:
    root = tmp_path / "ckpt"
    rc, out, _ = run_cli(str(root), "--dry-run")
    assert rc == 0 and not root.exists() and "RANDOM" in out

    def params(label: str) -> int:
        match = re.search(rf"^  {label} .*?([\d,]+) params", out, re.M)
        return int(match.group(1).replace(",", ""))

    # Wan2.1-I2V-14B PoseGen DiT, written out: d = 5120, ffn 13824, 40 blocks, text 4096.
    d, f, n, text, freq, clip, rank = 5120, 13824, 40, 4096, 256, 1280, 64
    block = (4 * (d * d + d) + 2 * d  # self-attention q k v o, norm_q, norm_k
             + 6 * (d * d + d) + 3 * d  # cross-attention q k v o k_img v_img, 3 norms
             + 2 * d  # norm3 (affine)
             + (d * f + f) + (f * d + d)  # ffn
             + 6 * d)  # modulation
    outside = ((36 + 16 + 16) * 4 * d + 3 * d  # patch, ref and hand patch embeddings (1x2x2)
               + d * d + d  # hand 1x1x1 projection
               + text * d + d + d * d + d  # text embedding
               + freq * d + d + d * d + d  # time embedding
               + d * 6 * d + 6 * d  # time projection
               + d * 16 * 4 + 16 * 4 + 2 * d  # head, head modulation
               + 2 * clip + clip * clip + clip + clip * d + d + 2 * d)  # img_emb MLP
    lora = n * rank * (8 * (d + d) + 2 * (d + f))  # 8 attention linears + 2 ffn linears
    assert abs(n * block + outside - 16.4e9) / 16.4e9 < 0.01
    expected = n * block + outside + lora
    dit = params(r"DiT base")
    assert abs(dit - expected) / expected < 0.01
    assert params("DiT cond") == dit
    t5 = 256384 * 4096 + 24 * (4 * 4096**2 + 3 * 4096 * 10240 + 2 * 4096 + 32 * 64) + 4096
    assert params("umT5") == t5
    vit = 32 * (4 * 1280 + 4 * 1280**2 + 4 * 1280 + 2 * 1280 * 5120 + 5120 + 1280)
    vit += 1280 * 3 * 14 * 14 + 1280 + 257 * 1280 + 4 * 1280 + 1280 * 1024 + 1  # + log_scale
    assert params("CLIP") == vit
    assert abs(params("VAE") - 127e6) / 127e6 < 0.01
    total = int(re.search(r"\((\d+) bytes\); cond DiT: hard links", out).group(1))
    assert abs(total - 2 * (dit + t5 + vit + params("VAE"))) / total < 0.01
    assert "720p-81f-base/pytorch_model-00021-of-00021.bin" in out  # ~1.65 GB shards


def test_progress_is_one_live_line_on_a_tty_and_plain_lines_otherwise(tmp_path: Path) -> None:
    from engine.checkpoint.full import Progress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    partial = tmp_path / "part.tmp"
    partial.write_bytes(b"x" * 250)
    tty = Tty()
    progress = Progress(1000, tty, interval=60)
    progress.phase("writing a.bin", partial)  # bytes in the temp file count as written
    assert "[250 B / 1.00 KB  25.0%]" in tty.getvalue() and "writing a.bin" in tty.getvalue()
    progress.file_done(600, "a.bin done")
    progress.close()
    assert tty.getvalue().count("\r\033[K") == 3 and tty.getvalue().count("\n") == 1
    assert "[600 B / 600 B 100.0%]" in tty.getvalue() and "ETA" in tty.getvalue()

    log = io.StringIO()
    progress = Progress(1000, log, interval=60)
    progress.phase("writing a.bin", partial)
    progress.file_done(1000, "a.bin done")
    progress.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 2 and "100.0%" in lines[-1]
