"""PoseGenDiT, its 3-D RoPE and the release-format DiT folder loader (spec section 3)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.checkpoint.dit_loader import load_dit, merge_lora, write_dit_folder
from engine.checkpoint.layout import CheckpointError
from engine.models.dit import DiTConfig, PoseGenDiT
from engine.models.rope import apply_rope, axis_dims, grid_angles, reference_angles

TEXT_DIM = 32
TEXT_LEN = 7


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_cfg(**overrides) -> DiTConfig:
    values = dict(dim=64, in_dim=36, ffn_dim=128, out_dim=16, text_dim=TEXT_DIM, freq_dim=64,
                  eps=1e-6, patch_size=(1, 2, 2), num_heads=2, num_layers=2,
                  has_image_input=True, has_image_pos_emb=False, shift_ref_pos=True,
                  use_hand=True, use_hand_proj=True)
    values.update(overrides)
    return DiTConfig(**values)


def tiny_model(cfg: DiTConfig | None = None, seed: int = 0) -> PoseGenDiT:
    torch.manual_seed(seed)
    return PoseGenDiT(cfg or tiny_cfg()).eval().requires_grad_(False)


def make_inputs(f: int = 2, h: int = 8, w: int = 6, ref_hw: tuple[int, int] | None = None,
                seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    rh, rw = ref_hw or (h, w)
    return {
        "latents": torch.randn(1, 16, f, h, w, generator=g),
        "cond": torch.randn(1, 20, f, h, w, generator=g),
        "hand": torch.randn(1, 16, f, h, w, generator=g),
        "ref": torch.randn(1, 16, 1, rh, rw, generator=g),
        "text": torch.randn(1, TEXT_LEN, TEXT_DIM, generator=g),
        "clip": torch.randn(1, 257, 1280, generator=g),
        "timestep": torch.tensor([999.0]),
    }


def run(model: PoseGenDiT, x: dict[str, torch.Tensor], **replace) -> torch.Tensor:
    x = {**x, **replace}
    with torch.no_grad():
        context = model.embed_context(x["text"], x["clip"])
        return model(x["latents"], x["cond"], x["hand"], x["ref"], context, x["timestep"])


# -- forward -------------------------------------------------------------------------------


@pytest.mark.parametrize("num_layers", [2, 4])
@pytest.mark.parametrize("shift_ref_pos", [True, False])
def test_forward_shape(num_layers: int, shift_ref_pos: bool) -> None:
    model = tiny_model(tiny_cfg(num_layers=num_layers, shift_ref_pos=shift_ref_pos))
    x = make_inputs(f=3, h=8, w=6)
    out = run(model, x)
    assert out.shape == x["latents"].shape == (1, 16, 3, 8, 6)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert out.abs().sum() > 0


def test_context_is_clip_then_text() -> None:
    model = tiny_model()
    x = make_inputs()
    with torch.no_grad():
        context = model.embed_context(x["text"], x["clip"])
        assert context.shape == (1, 257 + TEXT_LEN, 64)
        torch.testing.assert_close(context[:, :257], model.img_emb(x["clip"]))
        torch.testing.assert_close(context[:, 257:], model.text_embedding(x["text"]))
    with pytest.raises(ValueError):
        model.embed_context(x["text"], None)


def test_unpatchify_channel_order() -> None:
    # Release: "b (f h w) (x y z c) -> b c (f x) (h y) (w z)", channel fastest in a token.
    model = tiny_model()
    f, h, w = 2, 3, 4
    pf, ph, pw = model.cfg.patch_size
    c = model.cfg.out_dim
    tokens = torch.zeros(1, f * h * w, pf * ph * pw * c)
    for n in range(f * h * w):
        for j in range(pf * ph * pw * c):
            tokens[0, n, j] = n * 1000 + j
    out = model._unpatchify(tokens, (f, h, w))
    assert out.shape == (1, c, f * pf, h * ph, w * pw)
    for ch, fi, yi, xi in [(0, 0, 0, 0), (5, 1, 4, 7), (15, 0, 5, 2), (3, 1, 1, 6)]:
        n = (fi // pf) * h * w + (yi // ph) * w + (xi // pw)
        j = (((fi % pf) * ph + yi % ph) * pw + xi % pw) * c + ch
        assert out[0, ch, fi, yi, xi].item() == n * 1000 + j


def test_reference_latent_changes_output() -> None:
    model = tiny_model()
    x = make_inputs()
    base = run(model, x)
    other = run(model, x, ref=x["ref"] + 1.0)
    assert not torch.allclose(base, other)
    assert torch.equal(base, run(model, x))  # deterministic


def test_hand_latent_changes_output() -> None:
    model = tiny_model()
    x = make_inputs()
    assert not torch.allclose(run(model, x), run(model, x, hand=torch.zeros_like(x["hand"])))
    with pytest.raises(ValueError):
        run(model, x, hand=None)


def test_hand_is_added_to_patch_tokens() -> None:
    # hand_patch_embedding is added to the patch tokens: zero hand weights (and bias) make
    # the hand latents irrelevant.
    model = tiny_model(tiny_cfg(use_hand_proj=False))
    for p in model.hand_patch_embedding.parameters():
        p.zero_()
    x = make_inputs()
    torch.testing.assert_close(run(model, x), run(model, x, hand=x["hand"] * 7 + 3),
                               rtol=0, atol=0)


def test_shift_ref_pos_is_used() -> None:
    a = tiny_model(tiny_cfg(shift_ref_pos=False))
    b = PoseGenDiT(tiny_cfg(shift_ref_pos=True)).eval()
    b.load_state_dict(a.state_dict())
    x = make_inputs()
    assert not torch.allclose(run(a, x), run(b, x))


@pytest.mark.parametrize("ref_hw", [(4, 4), (12, 10)])
def test_head_sees_video_tokens_only(ref_hw: tuple[int, int]) -> None:
    model = tiny_model()
    x = make_inputs(f=2, h=8, w=6)
    out = run(model, x, ref=make_inputs(ref_hw=ref_hw)["ref"])
    assert out.shape == (1, 16, 2, 8, 6)
    assert not torch.allclose(out, run(model, x))


class KeyRecorder:
    """AttentionHook that keeps every block's self-attention keys."""

    def __init__(self) -> None:
        self.k: dict[int, torch.Tensor] = {}
        self.n_video: set[int] = set()

    def self_attention(self, block, q, k, v, n_video, x, project_kv):
        self.k[block] = k.clone()
        self.n_video.add(n_video)
        return None

    def wants_keyword_map(self, block: int) -> bool:
        return False

    def keyword_map(self, block, q_video, k_text) -> None:
        raise AssertionError("not asked for")

    def end_forward(self) -> None:
        pass


def keys(model: PoseGenDiT, x: dict[str, torch.Tensor], **replace) -> KeyRecorder:
    x = {**x, **replace}
    hook = KeyRecorder()
    with torch.no_grad():
        context = model.embed_context(x["text"], x["clip"])
        model(x["latents"], x["cond"], x["hand"], x["ref"], context, x["timestep"], hook)
    return hook


def test_reference_tokens_join_self_attention_only() -> None:
    model = tiny_model(tiny_cfg(num_layers=2))
    x = make_inputs(f=2, h=8, w=6, ref_hw=(4, 6))
    n_video, n_ref = 2 * 4 * 3, 1 * 2 * 3
    a = keys(model, x)
    assert a.n_video == {n_video}
    assert a.k[0].shape == (1, n_video + n_ref, 2, 32)

    # Reference tokens are modulated with timestep 0: their block-0 keys ignore the timestep.
    b = keys(model, x, timestep=torch.tensor([10.0]))
    torch.testing.assert_close(a.k[0][:, n_video:], b.k[0][:, n_video:], rtol=0, atol=1e-6)
    assert not torch.allclose(a.k[0][:, :n_video], b.k[0][:, :n_video])

    # No cross-attention for reference tokens: after block 0 they still ignore the prompt
    # (block 0's self-attention saw the video tokens before their cross-attention).
    c = keys(model, x, text=x["text"] + 1.0)
    torch.testing.assert_close(a.k[1][:, n_video:], c.k[1][:, n_video:], rtol=0, atol=1e-6)
    assert not torch.allclose(a.k[1][:, :n_video], c.k[1][:, :n_video])


# -- module names (spec section 3) ---------------------------------------------------------


def spec_module_names(cfg: DiTConfig) -> set[str]:
    names = {"patch_embedding", "ref_patch_embedding", "text_embedding.0", "text_embedding.2",
             "time_embedding.0", "time_embedding.2", "time_projection.1", "head.head",
             "head.modulation", "img_emb.proj.0", "img_emb.proj.1", "img_emb.proj.3",
             "img_emb.proj.4"}
    # The release wraps the hand conv and its 1x1x1 projection in nn.Sequential.
    if cfg.use_hand_proj:
        names |= {"hand_patch_embedding.0", "hand_patch_embedding.1"}
    else:
        names.add("hand_patch_embedding")
    if cfg.has_image_pos_emb:
        names.add("img_emb.emb_pos")
    for i in range(cfg.num_layers):
        for attn in ("self_attn", "cross_attn"):
            names |= {f"blocks.{i}.{attn}.{p}" for p in ("q", "k", "v", "o", "norm_q", "norm_k")}
        names |= {f"blocks.{i}.cross_attn.{p}" for p in ("k_img", "v_img", "norm_k_img")}
        names |= {f"blocks.{i}.norm3", f"blocks.{i}.ffn.0", f"blocks.{i}.ffn.2",
                  f"blocks.{i}.modulation"}
    return names


def prefixes(keys) -> set[str]:
    out = set()
    for k in keys:
        head, _, leaf = k.rpartition(".")
        out.add(head if leaf in ("weight", "bias") else k)
    return out


@pytest.mark.parametrize("has_image_pos_emb", [False, True])
@pytest.mark.parametrize("use_hand_proj", [False, True])
def test_module_names_match_spec(has_image_pos_emb: bool, use_hand_proj: bool) -> None:
    cfg = tiny_cfg(num_layers=3, has_image_pos_emb=has_image_pos_emb,
                   use_hand_proj=use_hand_proj)
    model = PoseGenDiT(cfg)
    state = model.state_dict()
    assert prefixes(state) == spec_module_names(cfg)
    assert set(state) == {n for n, _ in model.named_parameters()}  # no stray buffers
    dim, k = cfg.dim, cfg.patch_size
    assert state["patch_embedding.weight"].shape == (dim, 36, *k)
    assert state["ref_patch_embedding.weight"].shape == (dim, 16, *k)
    assert state["head.head.weight"].shape == (16 * math.prod(k), dim)
    assert state["blocks.0.modulation"].shape == (1, 6, dim)
    assert state["head.modulation"].shape == (1, 2, dim)
    assert state["img_emb.proj.1.weight"].shape == (1280, 1280)
    assert state["img_emb.proj.3.weight"].shape == (dim, 1280)
    assert state["text_embedding.0.weight"].shape == (dim, cfg.text_dim)
    assert state["time_embedding.0.weight"].shape == (dim, cfg.freq_dim)
    assert state["time_projection.1.weight"].shape == (6 * dim, dim)
    if use_hand_proj:
        assert state["hand_patch_embedding.1.weight"].shape == (dim, dim, 1, 1, 1)


# -- RoPE ------------------------------------------------------------------------------------


def test_axis_dims_release_split() -> None:
    assert axis_dims(128) == (44, 42, 42)
    # Wan2.1 splits a head as (d - 2*(d//3), d//3, d//3); wherever that split is even
    # (i.e. usable for rotating channel pairs) the engine's split must be the same.
    checked = 0
    for d in range(8, 513, 2):
        dims = axis_dims(d)
        assert sum(dims) == d and all(p > 0 and p % 2 == 0 for p in dims)
        if (d // 3) % 2 == 0:
            assert dims == (d - 2 * (d // 3), d // 3, d // 3)
            checked += 1
    assert checked > 50


@pytest.mark.parametrize("head_dim", [33, 63, 127, 4, 2])
def test_axis_dims_rejects_odd_or_empty_parts(head_dim: int) -> None:
    with pytest.raises(ValueError):
        axis_dims(head_dim)


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        PoseGenDiT(tiny_cfg(dim=66, num_heads=2))  # head size 33 has odd RoPE parts
    with pytest.raises(ValueError):
        PoseGenDiT(tiny_cfg(dim=64, num_heads=3))
    with pytest.raises(ValueError):
        PoseGenDiT(tiny_cfg(in_dim=16))


def expected_angles(head_dim: int, positions: list[tuple[int, int, int]]) -> np.ndarray:
    """pos / 10000**(2j/d) per axis, axes concatenated (frame, height, width)."""
    dims = (head_dim - 2 * (head_dim // 3), head_dim // 3, head_dim // 3)
    rows = []
    for pos in positions:
        row = []
        for p, d in zip(pos, dims, strict=True):
            row += [p / 10000.0 ** (2 * j / d) for j in range(d // 2)]
        rows.append(row)
    return np.array(rows)


@pytest.mark.parametrize("shift", [False, True])
def test_reference_positions(shift: bool) -> None:
    hd, h, w = 36, 3, 5
    positions = [(0, y, (x - w) if shift else x) for y in range(h) for x in range(w)]
    got = reference_angles(hd, h, w, shift).numpy()
    np.testing.assert_allclose(got, expected_angles(hd, positions), rtol=1e-12, atol=1e-12)


def test_grid_positions_frame_major() -> None:
    hd, f, h, w = 36, 2, 3, 4
    positions = [(a, b, c) for a in range(f) for b in range(h) for c in range(w)]
    got = grid_angles(hd, f, h, w).numpy()
    np.testing.assert_allclose(got, expected_angles(hd, positions), rtol=1e-12, atol=1e-12)


def test_rope_depends_on_relative_position_only() -> None:
    hd = 36
    g = torch.Generator().manual_seed(3)
    q = torch.randn(1, 1, 1, hd, generator=g, dtype=torch.float64)
    k = torch.randn(1, 1, 1, hd, generator=g, dtype=torch.float64)
    angles = grid_angles(hd, 6, 6, 6).reshape(6, 6, 6, -1)

    def rotated(x: torch.Tensor, pos: tuple[int, int, int]) -> torch.Tensor:
        a = angles[pos][None]
        return apply_rope(x, a.cos()[None, :, None], a.sin()[None, :, None])

    def score(pq, pk) -> float:
        return float((rotated(q, pq) * rotated(k, pk)).sum())

    # apply_rope rotates in float32, hence the tolerances
    assert math.isclose(score((0, 1, 2), (3, 0, 1)), score((2, 3, 4), (5, 2, 3)), rel_tol=1e-5)
    assert not math.isclose(score((0, 1, 2), (3, 0, 1)), score((0, 1, 2), (3, 0, 2)),
                            rel_tol=1e-3)
    # a rotation keeps the norm
    assert math.isclose(float(rotated(q, (1, 2, 3)).norm()), float(q.norm()), rel_tol=1e-6)


# -- checkpoint folder round trip ----------------------------------------------------------


def test_folder_round_trip(tmp_path: Path) -> None:
    cfg = tiny_cfg(num_layers=2, shift_ref_pos=False)
    model = tiny_model(cfg, seed=5)
    write_dit_folder(tmp_path, model)

    config = json.loads((tmp_path / "model_config.json").read_text())
    spec_keys = {"dim", "in_dim", "ffn_dim", "out_dim", "text_dim", "freq_dim", "eps",
                 "patch_size", "num_heads", "num_layers", "has_image_input",
                 "has_image_pos_emb", "shift_ref_pos", "use_hand", "use_hand_proj"}
    assert spec_keys <= set(config)
    assert config["dim"] == 64 and config["patch_size"] == [1, 2, 2]
    assert config["shift_ref_pos"] is False and config["use_hand_proj"] is True
    assert DiTConfig.from_dict(config) == cfg

    bins = sorted(tmp_path.glob("*.bin"))
    assert bins
    raw: dict[str, torch.Tensor] = {}
    for b in bins:
        part = torch.load(b, map_location="cpu", weights_only=True)
        assert not set(part) & set(raw)
        raw.update(part)
    assert all(k.startswith("pipe.dit.") for k in raw)
    base_layer = [k for k in raw if ".base_layer." in k]
    lora_a = [k for k in raw if k.endswith(".lora_A.default.weight")]
    lora_b = [k for k in raw if k.endswith(".lora_B.default.weight")]
    assert base_layer and lora_a and lora_b and len(lora_a) == len(lora_b)
    for a in lora_a:
        layer = a[: -len(".lora_A.default.weight")]
        assert f"{layer}.lora_B.default.weight" in raw
        assert f"{layer}.base_layer.weight" in raw
    # Linear LoRA only: the release's merge cannot fold a pair into the hand projection's
    # 5-D 1x1x1 conv weight (ENGINE-SPEC section 10), so none is written.
    assert all(raw[k].dim() == 2 for k in lora_a)

    loaded = load_dit(tmp_path)
    assert loaded.cfg == cfg
    assert not any(p.requires_grad for p in loaded.parameters())
    want, got = model.state_dict(), loaded.state_dict()
    assert set(want) == set(got)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-6)
    x = make_inputs()
    torch.testing.assert_close(run(loaded, x), run(model, x), rtol=1e-6, atol=1e-6)


# -- LoRA merge ------------------------------------------------------------------------------


def _lora_dict(prefix: str, w, a, b, bias=None) -> dict[str, torch.Tensor]:
    d = {f"pipe.dit.{prefix}.base_layer.weight": w,
         f"pipe.dit.{prefix}.lora_A.default.weight": a,
         f"pipe.dit.{prefix}.lora_B.default.weight": b}
    if bias is not None:
        d[f"pipe.dit.{prefix}.base_layer.bias"] = bias
    return d


def test_merge_lora_linear_and_conv() -> None:
    rng = np.random.default_rng(0)
    r, n_in, n_out = 3, 5, 6
    w_lin = rng.standard_normal((n_out, n_in)).astype(np.float32)
    a_lin = rng.standard_normal((r, n_in)).astype(np.float32)
    b_lin = rng.standard_normal((n_out, r)).astype(np.float32)
    bias = rng.standard_normal(n_out).astype(np.float32)
    w_conv = rng.standard_normal((n_out, n_in, 1, 1, 1)).astype(np.float32)
    a_conv = rng.standard_normal((r, n_in, 1, 1, 1)).astype(np.float32)
    b_conv = rng.standard_normal((n_out, r, 1, 1, 1)).astype(np.float32)
    plain = rng.standard_normal((4, 4)).astype(np.float32)

    t = torch.from_numpy
    raw = {**_lora_dict("blocks.0.self_attn.q", t(w_lin), t(a_lin), t(b_lin), t(bias)),
           **_lora_dict("hand_patch_embedding.1", t(w_conv), t(a_conv), t(b_conv)),
           "pipe.dit.head.head.weight": t(plain)}
    merged = merge_lora(raw)
    assert set(merged) == {"blocks.0.self_attn.q.weight", "blocks.0.self_attn.q.bias",
                           "hand_patch_embedding.1.weight", "head.head.weight"}

    expected_lin = w_lin.astype(np.float64) + b_lin.astype(np.float64) @ a_lin.astype(np.float64)
    np.testing.assert_allclose(merged["blocks.0.self_attn.q.weight"].numpy(), expected_lin,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(merged["blocks.0.self_attn.q.bias"].numpy(), bias)

    expected_conv = w_conv.astype(np.float64).copy()
    for o in range(n_out):
        for i in range(n_in):
            expected_conv[o, i, 0, 0, 0] += sum(float(b_conv[o, j, 0, 0, 0])
                                                * float(a_conv[j, i, 0, 0, 0]) for j in range(r))
    got = merged["hand_patch_embedding.1.weight"]
    assert got.shape == (n_out, n_in, 1, 1, 1)
    np.testing.assert_allclose(got.numpy(), expected_conv, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(merged["head.head.weight"].numpy(), plain)

    half = merge_lora(raw, alpha=0.5)["blocks.0.self_attn.q.weight"].numpy()
    np.testing.assert_allclose(half, w_lin + 0.5 * (b_lin.astype(np.float64) @ a_lin),
                               rtol=1e-5, atol=1e-5)


def test_merge_lora_keeps_dtype() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 5, generator=g).to(torch.bfloat16)
    a = torch.randn(2, 5, generator=g).to(torch.bfloat16)
    b = torch.randn(6, 2, generator=g).to(torch.bfloat16)
    got = merge_lora(_lora_dict("x", w, a, b))["x.weight"]
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), w.float() + b.float() @ a.float(), rtol=2e-2,
                               atol=2e-2)


def test_merge_lora_missing_b_or_base() -> None:
    w, a, b = torch.zeros(4, 3), torch.zeros(2, 3), torch.zeros(4, 2)
    raw = _lora_dict("blocks.1.ffn.0", w, a, b)
    del raw["pipe.dit.blocks.1.ffn.0.lora_B.default.weight"]
    with pytest.raises(CheckpointError, match=r"blocks\.1\.ffn\.0"):
        merge_lora(raw)
    raw = _lora_dict("blocks.1.ffn.0", w, a, b)
    del raw["pipe.dit.blocks.1.ffn.0.base_layer.weight"]
    with pytest.raises(CheckpointError, match=r"blocks\.1\.ffn\.0"):
        merge_lora(raw)


# -- loader errors ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dit") / "720p-81f-base"
    write_dit_folder(folder, tiny_model(tiny_cfg(num_layers=2)))
    return folder


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nope"):
        load_dit(tmp_path / "nope")


def test_missing_config(tiny_folder: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_folder, tmp_path / "d")
    (folder / "model_config.json").unlink()
    with pytest.raises(CheckpointError) as e:
        load_dit(folder)
    assert str(folder) in str(e.value) and "model_config.json" in str(e.value)


def test_bad_config_json(tiny_folder: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_folder, tmp_path / "d")
    (folder / "model_config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="model_config.json"):
        load_dit(folder)


def test_missing_shards(tiny_folder: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_folder, tmp_path / "d")
    for b in folder.glob("*.bin"):
        b.unlink()
    with pytest.raises(CheckpointError) as e:
        load_dit(folder)
    assert str(folder) in str(e.value) and ".bin" in str(e.value)


def test_truncated_shard(tiny_folder: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_folder, tmp_path / "d")
    shard = sorted(folder.glob("*.bin"))[-1]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as e:
        load_dit(folder)
    assert shard.name in str(e.value)


def test_shard_not_a_dict(tiny_folder: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_folder, tmp_path / "d")
    torch.save(torch.zeros(3), folder / "extra.bin")
    with pytest.raises(CheckpointError, match="extra.bin"):
        load_dit(folder)


def _edit_key(folder: Path, key: str, value: torch.Tensor | None) -> None:
    for shard in folder.glob("*.bin"):
        part = torch.load(shard, weights_only=True)
        if key in part:
            if value is None:
                del part[key]
            else:
                part[key] = value
            torch.save(part, shard)
            return
    raise AssertionError(f"{key} not in any shard")


def test_wrong_shape_names_key(tiny_folder: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_folder, tmp_path / "d")
    _edit_key(folder, "pipe.dit.head.head.bias", torch.zeros(63))
    with pytest.raises(CheckpointError) as e:
        load_dit(folder)
    msg = str(e.value)
    assert str(folder) in msg and "head.head.bias" in msg and "63" in msg and "64" in msg


def test_config_dim_mismatch_names_keys(tiny_folder: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_folder, tmp_path / "d")
    cfg = json.loads((folder / "model_config.json").read_text())
    cfg["ffn_dim"] = 256
    (folder / "model_config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError) as e:
        load_dit(folder)
    msg = str(e.value)
    assert str(folder) in msg
    assert any(f"blocks.{i}.ffn.{j}.{leaf}" in msg for i in range(2) for j in (0, 2)
               for leaf in ("weight", "bias"))

    folder2 = _copy(tiny_folder, tmp_path / "d2")
    cfg = json.loads((folder2 / "model_config.json").read_text())
    cfg["dim"] = 128
    (folder2 / "model_config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"patch_embedding|blocks\.0\."):
        load_dit(folder2)


def test_missing_key_named(tiny_folder: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_folder, tmp_path / "d")
    _edit_key(folder, "pipe.dit.blocks.1.norm3.weight", None)
    with pytest.raises(CheckpointError, match=r"blocks\.1\.norm3\.weight"):
        load_dit(folder)
