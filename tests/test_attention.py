"""Otsu masks, shared attention, keyword maps and the anchor/base KV sharing (spec section 5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import engine.kv_share as kv_share
from engine.kv_cache import AnchorCache, CacheMismatchError
from engine.kv_share import AnchorRecorder, BaseSharer, ShareSettings
from engine.models.attention import (
    attention,
    keyword_map,
    otsu_foreground,
    shared_attention,
    split_rows,
)
from engine.models.dit import DiTConfig, PoseGenDiT

TEXT_DIM = 32


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- Otsu ------------------------------------------------------------------------------------


def brute_force_otsu(frame: np.ndarray) -> np.ndarray:
    """Foreground of one frame by ENGINE-SPEC section 10, in float64 loops.

    256 bins over [0, 1] (1.0 in the last), class statistics from the bin centres, the
    first split t* maximising w0 w1 (m0 - m1)^2, foreground = value > centre of bin t*.
    """
    v = frame.astype(np.float64).ravel()
    bins = np.minimum((v * 256).astype(np.int64), 255)
    centres = (np.arange(256) + 0.5) / 256
    best, best_t = -1.0, 0
    for t in range(256):  # class 0 = bins <= t, class 1 = bins > t
        c0, c1 = centres[bins[bins <= t]], centres[bins[bins > t]]
        if len(c0) == 0 or len(c1) == 0:
            score = 0.0
        else:
            w0, w1 = len(c0) / len(bins), len(c1) / len(bins)
            score = w0 * w1 * (c0.mean() - c1.mean()) ** 2
        if score > best + 1e-15:
            best, best_t = score, t
    return frame > np.float32(centres[best_t])


def test_otsu_two_levels() -> None:
    # 0.098 sits in bin 25 below its centre (25.5/256 = 0.0996), so the lower level is
    # background. (At 0.1, above that centre, the release's rule would make it
    # foreground too: tests/test_release_numerics.py pins that case.)
    rng = np.random.default_rng(0)
    values = np.array([0.098] * 12 + [0.9] * 12)
    rng.shuffle(values)
    frame = values.reshape(1, 4, 6)
    fg = otsu_foreground(torch.tensor(frame, dtype=torch.float32))
    assert fg.dtype == torch.bool and fg.shape == (1, 4, 6)
    np.testing.assert_array_equal(fg.numpy(), frame > 0.5)


def test_otsu_three_levels_by_hand() -> None:
    # {0.098} x10, {0.5} x5, {0.8} x9, in bins 25, 128, 204 whose centres are 0.0996,
    # 0.5020, 0.7988. Splitting after bin 25: w0 w1 (m0-m1)^2 = (10*14/576) *
    # (0.0996 - 0.6928)^2 = 0.0855; after bin 128: (15*9/576) * (0.2337 - 0.7988)^2 =
    # 0.0749. So t* = 25 and 0.5 and 0.8 are foreground, 0.098 (below 0.0996) is not.
    values = np.array([0.098] * 10 + [0.5] * 5 + [0.8] * 9)
    np.random.default_rng(1).shuffle(values)
    frame = values.reshape(1, 4, 6)
    fg = otsu_foreground(torch.tensor(frame, dtype=torch.float32)).numpy()
    np.testing.assert_array_equal(fg, frame > 0.3)
    np.testing.assert_array_equal(fg[0], brute_force_otsu(frame[0]))


@pytest.mark.parametrize("seed", range(4))
def test_otsu_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Three clusters of different sizes, plus the exact ends of the range.
    frames = []
    for _ in range(3):
        centers = rng.uniform(0, 1, size=3)
        idx = rng.choice(3, size=48, p=[0.5, 0.3, 0.2])
        f = np.clip(centers[idx] + rng.normal(0, 0.05, size=48), 0, 1)
        f[0], f[1] = 0.0, 1.0
        frames.append(f.reshape(6, 8))
    maps = np.stack(frames)
    fg = otsu_foreground(torch.tensor(maps, dtype=torch.float32)).numpy()
    for i in range(len(frames)):
        np.testing.assert_array_equal(fg[i], brute_force_otsu(maps[i].astype(np.float32)))


def test_otsu_per_frame() -> None:
    # Frame 0: levels 0.098 / 0.9. Frame 1: levels 0.298 / 0.4 (each low level just below
    # its bin's centre). One joint threshold would put all of frame 1 on one side;
    # per-frame thresholds split frame 1 between its levels.
    f0 = np.array([0.098] * 8 + [0.9] * 8).reshape(4, 4)
    f1 = np.array([0.298] * 10 + [0.4] * 6).reshape(4, 4)
    fg = otsu_foreground(torch.tensor(np.stack([f0, f1]), dtype=torch.float32)).numpy()
    np.testing.assert_array_equal(fg[0], f0 > 0.5)
    np.testing.assert_array_equal(fg[1], f1 > 0.35)
    joint = brute_force_otsu(np.concatenate([f0, f1]))
    assert not np.array_equal(joint[4:], fg[1])  # the per-frame answer is really different


# -- shared attention ------------------------------------------------------------------------

N_VIDEO, N_REF, HEADS, D = 24, 6, 2, 8


def dense_reference(q, k, v, ka, va, fg_video: torch.Tensor | None) -> torch.Tensor:
    """The release's formulation, in float64: a dense (n x n) mask, then a row select."""
    q, k, v, ka, va = (t.double()[0].transpose(0, 1) for t in (q, k, v, ka, va))  # (h, n, d)
    n = q.shape[1]
    scale = q.shape[-1] ** -0.5

    def attend(kk, vv, mask=None):
        s = q @ kk.transpose(1, 2) * scale
        if mask is not None:
            s = s.masked_fill(mask, float("-inf"))
        return (torch.softmax(s, dim=-1) @ vv).transpose(0, 1).reshape(n, -1)

    if fg_video is None:
        return attend(ka, va)[None]
    fg = torch.zeros(n, dtype=torch.bool)
    fg[:N_VIDEO] = fg_video.reshape(-1)  # reference tokens are never foreground
    forbid = fg[:, None] & fg[None, :]
    own = attend(k, v)
    shared = attend(ka, va, forbid)
    return torch.where(fg[:, None], own, shared)[None]


def qkv(seed: int):
    g = torch.Generator().manual_seed(seed)
    n = N_VIDEO + N_REF
    return [torch.randn(1, n, HEADS, D, generator=g) for _ in range(5)]


@pytest.mark.parametrize("seed", range(3))
def test_shared_attention_equals_dense_mask(seed: int) -> None:
    q, k, v, ka, va = qkv(seed)
    g = torch.Generator().manual_seed(100 + seed)
    fg = (torch.rand(2, 3, 4, generator=g) < 0.4)  # (f, h, w) over the 24 video tokens
    assert 0 < int(fg.sum()) < N_VIDEO
    got = shared_attention(q, k, v, ka, va, split_rows(fg, N_VIDEO + N_REF, "cpu"))
    assert got.shape == (1, N_VIDEO + N_REF, HEADS * D)
    want = dense_reference(q, k, v, ka, va, fg)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)


def test_shared_attention_mask_off_is_anchor_attention() -> None:
    q, k, v, ka, va = qkv(7)
    got = shared_attention(q, k, v, ka, va, None)
    torch.testing.assert_close(got.double(), dense_reference(q, k, v, ka, va, None),
                               rtol=1e-5, atol=1e-6)
    own = dense_reference(q, k, v, k, v, None)
    assert not torch.allclose(got.double(), own, atol=1e-3)


def test_shared_attention_all_and_no_foreground() -> None:
    q, k, v, ka, va = qkv(8)
    everything = torch.ones(N_VIDEO, dtype=torch.bool)
    got = shared_attention(q, k, v, ka, va,
                           split_rows(everything, N_VIDEO + N_REF, "cpu")).double()
    torch.testing.assert_close(got, dense_reference(q, k, v, ka, va, everything),
                               rtol=1e-5, atol=1e-6)
    own = dense_reference(q, k, v, k, v, None)
    anchor = dense_reference(q, k, v, ka, va, None)
    torch.testing.assert_close(got[:, :N_VIDEO], own[:, :N_VIDEO], rtol=1e-5, atol=1e-6)
    # reference rows are never foreground: they see the anchor's keys unmasked
    torch.testing.assert_close(got[:, N_VIDEO:], anchor[:, N_VIDEO:], rtol=1e-5, atol=1e-6)

    nothing = torch.zeros(N_VIDEO, dtype=torch.bool)
    got = shared_attention(q, k, v, ka, va,
                           split_rows(nothing, N_VIDEO + N_REF, "cpu")).double()
    torch.testing.assert_close(got, anchor, rtol=1e-5, atol=1e-6)


# -- keyword map -----------------------------------------------------------------------------


def test_keyword_map_known_scores() -> None:
    f, h, w = 2, 3, 4
    q = torch.zeros(1, f * h * w, HEADS, 4)
    for fi in range(f):
        for hi in range(h):
            for wi in range(w):
                n = (fi * h + hi) * w + wi
                for head in range(HEADS):
                    # score grows along width; frame 1 sits far above frame 0, so only a
                    # per-frame normalisation gives the same picture in both frames
                    q[0, n, head, 0] = (wi + 100 * fi) * (head + 1)
                    q[0, n, head, 1] = 5.0  # orthogonal to the key: no effect
    k = torch.zeros(1, HEADS, 4)
    k[0, :, 0] = 1.0
    m = keyword_map(q, k, (f, h, w))
    assert m.shape == (f, h, w) and m.dtype == torch.float32
    expected = np.broadcast_to(np.arange(w) / (w - 1), (f, h, w))
    np.testing.assert_allclose(m.numpy(), expected, atol=1e-6)
    for fi in range(f):
        assert m[fi].min() == 0.0 and m[fi].max() == pytest.approx(1.0)


def test_keyword_map_random_against_loops() -> None:
    g = torch.Generator().manual_seed(0)
    f, h, w, d = 2, 2, 3, 8
    q = torch.randn(1, f * h * w, HEADS, d, generator=g)
    k = torch.randn(1, HEADS, d, generator=g)
    raw = np.zeros((f, h, w))
    for n in range(f * h * w):
        raw.flat[n] = np.mean([float(q[0, n, hd] @ k[0, hd]) / np.sqrt(d)
                               for hd in range(HEADS)])
    lo = raw.min(axis=(1, 2), keepdims=True)
    hi = raw.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(keyword_map(q, k, (f, h, w)).numpy(), (raw - lo) / (hi - lo),
                               atol=1e-5)


# -- anchor recording and base sharing on a tiny DiT -----------------------------------------

GRID = (2, 4, 4)  # latent (2, 8, 8) after the 1x2x2 patch
KEYWORD = 3


def tiny_model() -> PoseGenDiT:
    torch.manual_seed(0)
    cfg = DiTConfig(dim=64, in_dim=36, ffn_dim=128, out_dim=16, text_dim=TEXT_DIM, freq_dim=64,
                    num_heads=2, num_layers=4, shift_ref_pos=True, use_hand_proj=True)
    return PoseGenDiT(cfg).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def model() -> PoseGenDiT:
    return tiny_model()


def chunk_inputs(model: PoseGenDiT, seed: int, shared_seed: int = 99) -> dict:
    """Per-chunk latents/conditions from ``seed``; prompt, reference and CLIP shared."""
    g = torch.Generator().manual_seed(seed)
    s = torch.Generator().manual_seed(shared_seed)
    f, h, w = GRID[0], GRID[1] * 2, GRID[2] * 2
    clip = torch.randn(1, 257, 1280, generator=s)
    with torch.no_grad():
        ctx = {p: model.embed_context(torch.randn(1, 6, TEXT_DIM, generator=s), clip)
               for p in ("pos", "neg")}
    return {
        "latents": torch.randn(1, 16, f, h, w, generator=g),
        "cond": torch.randn(1, 20, f, h, w, generator=g),
        "hand": torch.randn(1, 16, f, h, w, generator=g),
        "ref": torch.randn(1, 16, 1, h, w, generator=s),
        "ctx": ctx,
        "timestep": torch.tensor([900.0]),
    }


def forward(model: PoseGenDiT, x: dict, cfg_pass: str, hook=None) -> torch.Tensor:
    with torch.no_grad():
        return model(x["latents"], x["cond"], x["hand"], x["ref"], x["ctx"][cfg_pass],
                     x["timestep"], hook)


class AnchorSpy(AnchorRecorder):
    """AnchorRecorder that also keeps the K/V the anchor attended with in share blocks."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.kv: dict[tuple[int, str, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def self_attention(self, block, q, k, v, n_video, x, project_kv):
        if self.sharing and self.settings.share_block(block):
            self.kv[(self.step, self.cfg_pass, block)] = (k.clone(), v.clone())
        return super().self_attention(block, q, k, v, n_video, x, project_kv)


def record_anchor(model: PoseGenDiT, root: Path, share: ShareSettings, steps: int = 2
                  ) -> tuple[AnchorCache, dict]:
    cache = AnchorCache(root)
    settings = {"steps": list(share.steps), "blocks": list(share.blocks), "seed": 1}
    cache.start(settings)
    hook = AnchorSpy(cache, share, KEYWORD, GRID)
    x = chunk_inputs(model, seed=1)
    for step in range(steps):
        for cfg_pass in ("pos", "neg"):
            hook.begin(step, cfg_pass)
            out = forward(model, x, cfg_pass, hook)
            # recording never changes the anchor's own result
            assert torch.equal(out, forward(model, x, cfg_pass))
        hook.end_step(lambda latents: None, torch.zeros(1))
    cache.finish()
    cache.anchor_kv = hook.kv  # what the tests compare the base's recomputed K/V with
    return cache, settings


SHARE = ShareSettings(steps=(0, 1), blocks=(2, 4), max_block_idx=1)


@pytest.fixture(scope="module")
def anchor(model: PoseGenDiT, tmp_path_factory: pytest.TempPathFactory) -> AnchorCache:
    cache, settings = record_anchor(model, tmp_path_factory.mktemp("anchor"), SHARE)
    cache.check(settings)
    return cache


def test_anchor_files(anchor: AnchorCache) -> None:
    names = {p.name for p in anchor.root.glob("*.safetensors")}
    assert names == {"x_s000_b002_pos.safetensors", "x_s000_b002_neg.safetensors",
                     "x_s000_b003_pos.safetensors", "x_s000_b003_neg.safetensors",
                     "maps_s000.safetensors"}
    x = load_file(str(anchor.root / "x_s000_b002_pos.safetensors"))["x"]
    n_tokens = GRID[0] * GRID[1] * GRID[2] + GRID[1] * GRID[2]  # video + reference
    assert x.shape == (1, n_tokens, 64)  # one tensor of the model width, not K and V
    neg = load_file(str(anchor.root / "x_s000_b002_neg.safetensors"))["x"]
    assert not torch.equal(x, neg)  # the passes differ (other context)
    maps = load_file(str(anchor.root / "maps_s000.safetensors"))
    assert set(maps) == {"block_0", "block_1"}  # blocks <= max_block_idx
    for m in maps.values():
        assert m.shape == GRID
        for fi in range(GRID[0]):
            assert float(m[fi].min()) == 0.0
            assert float(m[fi].max()) == pytest.approx(1.0)


class Spy(BaseSharer):
    """BaseSharer that records its own keyword maps and what shared_attention received."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.own_maps: dict[tuple[str, int], torch.Tensor] = {}
        self.calls: dict[tuple[str, int], dict] = {}

    def keyword_map(self, block, q_video, k_text) -> None:
        super().keyword_map(block, q_video, k_text)
        self.own_maps[(self.cfg_pass, block)] = self._own[block].clone()

    def self_attention(self, block, q, k, v, n_video, x, project_kv):
        recomputed: list = []

        def spy_kv(t):
            recomputed.append(project_kv(t))
            return recomputed[-1]

        out = super().self_attention(block, q, k, v, n_video, x, spy_kv)
        if out is not None:
            self.calls[(self.cfg_pass, block)] = {"q": q, "k": k, "v": v, "out": out,
                                                  "n_video": n_video, "kv_a": recomputed[0]}
        return out


@pytest.fixture
def record_fg(monkeypatch: pytest.MonkeyPatch) -> list:
    seen: list = []
    real = kv_share.shared_attention

    def wrapper(q, k, v, k_a, v_a, rows):
        if rows is None:
            seen.append(None)
        else:  # back to the (f, h, w) foreground of the video tokens
            own = torch.zeros(GRID[0] * GRID[1] * GRID[2], dtype=torch.bool)
            own[rows[0][rows[0] < own.numel()]] = True
            assert torch.equal(torch.sort(torch.cat(rows)).values, torch.arange(q.shape[1]))
            seen.append(own.reshape(GRID))
        return real(q, k, v, k_a, v_a, rows)

    monkeypatch.setattr(kv_share, "shared_attention", wrapper)
    return seen


def otsu_np(maps: list[torch.Tensor]) -> np.ndarray:
    avg = torch.stack(maps).mean(0).numpy()
    return np.stack([brute_force_otsu(frame) for frame in avg])


def test_base_chunk_with_same_inputs_is_unchanged(model: PoseGenDiT, anchor: AnchorCache
                                                  ) -> None:
    # A base chunk identical to the anchor reads back exactly its own K/V, so sharing must
    # change nothing: this pins step, block and pass of every cached tensor.
    x = chunk_inputs(model, seed=1)
    for use_mask in (True, False):
        share = ShareSettings(steps=SHARE.steps, blocks=SHARE.blocks,
                              max_block_idx=SHARE.max_block_idx, use_mask=use_mask)
        hook = BaseSharer(anchor, share, KEYWORD, GRID, "cpu")
        for cfg_pass in ("pos", "neg"):
            hook.begin(0, cfg_pass)
            torch.testing.assert_close(forward(model, x, cfg_pass, hook),
                                       forward(model, x, cfg_pass), rtol=1e-5, atol=1e-5)


def test_base_chunk_sharing_with_mask(model: PoseGenDiT, anchor: AnchorCache,
                                      record_fg: list) -> None:
    x = chunk_inputs(model, seed=2)
    hook = Spy(anchor, SHARE, KEYWORD, GRID, "cpu")
    outs = {}
    for cfg_pass in ("pos", "neg"):
        hook.begin(0, cfg_pass)
        outs[cfg_pass] = forward(model, x, cfg_pass, hook)
        assert not torch.allclose(outs[cfg_pass], forward(model, x, cfg_pass), atol=1e-4)
    # own maps only from the positive pass, only in map blocks
    assert set(hook.own_maps) == {("pos", 0), ("pos", 1)}
    # two share blocks x two passes
    assert len(record_fg) == 4 and set(hook.calls) == {(p, b) for p in ("pos", "neg")
                                                       for b in (2, 3)}

    anchor_maps = load_file(str(anchor.root / "maps_s000.safetensors"))
    a_maps = [anchor_maps["block_0"], anchor_maps["block_1"]]
    own = [hook.own_maps[("pos", 0)], hook.own_maps[("pos", 1)]]
    expected_fg = otsu_np(a_maps) | otsu_np(own)
    assert 0 < expected_fg.sum() < expected_fg.size
    for fg in record_fg:  # blocks 2 and 3, both passes: the same mask
        np.testing.assert_array_equal(fg.numpy(), expected_fg)

    for (cfg_pass, block), call in hook.calls.items():
        # K/V recomputed from the cached input are bit for bit what the anchor attended with
        k_a, v_a = anchor.anchor_kv[(0, cfg_pass, block)]
        assert torch.equal(call["kv_a"][0], k_a) and torch.equal(call["kv_a"][1], v_a)
        q, k, v, out = call["q"], call["k"], call["v"], call["out"]
        fg_rows = torch.zeros(q.shape[1], dtype=torch.bool)
        fg_rows[: call["n_video"]] = torch.from_numpy(expected_fg.reshape(-1))
        own_out = attention(q, k, v)
        shared_out = attention(q, k_a, v_a)
        torch.testing.assert_close(out[:, fg_rows], own_out[:, fg_rows], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out[:, ~fg_rows], shared_out[:, ~fg_rows], rtol=1e-5,
                                   atol=1e-6)

    # outside the share steps the hook does nothing
    hook.begin(1, "pos")
    assert torch.equal(forward(model, x, "pos", hook), forward(model, x, "pos"))


def test_base_chunk_sharing_without_mask(model: PoseGenDiT, anchor: AnchorCache,
                                         record_fg: list) -> None:
    x = chunk_inputs(model, seed=3)
    share = ShareSettings(steps=SHARE.steps, blocks=SHARE.blocks,
                          max_block_idx=SHARE.max_block_idx, use_mask=False)
    hook = Spy(anchor, share, KEYWORD, GRID, "cpu")
    for cfg_pass in ("pos", "neg"):
        hook.begin(0, cfg_pass)
        out = forward(model, x, cfg_pass, hook)
        assert not torch.allclose(out, forward(model, x, cfg_pass), atol=1e-4)
    assert not hook.own_maps  # no maps needed without the mask
    assert record_fg == [None] * 4
    for (cfg_pass, block), call in hook.calls.items():
        k_a, v_a = anchor.anchor_kv[(0, cfg_pass, block)]
        torch.testing.assert_close(call["out"], attention(call["q"], k_a, v_a),
                                   rtol=1e-5, atol=1e-6)


def test_share_blocks_from_zero(model: PoseGenDiT, tmp_path: Path, record_fg: list) -> None:
    share = ShareSettings(steps=(0, 1), blocks=(0, 4), max_block_idx=1)
    cache, _ = record_anchor(model, tmp_path / "anchor", share, steps=1)
    names = {p.name for p in cache.root.glob("*.safetensors")}
    assert names == {f"x_s000_b{b:03d}_{p}.safetensors" for b in range(4)
                     for p in ("pos", "neg")} | {"maps_s000.safetensors"}

    x = chunk_inputs(model, seed=4)
    hook = Spy(cache, share, KEYWORD, GRID, "cpu")
    hook.begin(0, "pos")
    out = forward(model, x, "pos", hook)
    assert torch.isfinite(out).all()
    anchor_maps = load_file(str(cache.root / "maps_s000.safetensors"))
    assert len(record_fg) == 4
    # block 0: no own map exists yet, the anchor's block-0 map alone decides
    np.testing.assert_array_equal(record_fg[0].numpy(), otsu_np([anchor_maps["block_0"]]))
    # block 1: anchor maps 0..1 averaged, OR this chunk's block-0 map
    np.testing.assert_array_equal(
        record_fg[1].numpy(),
        otsu_np([anchor_maps["block_0"], anchor_maps["block_1"]])
        | otsu_np([hook.own_maps[("pos", 0)]]))


# -- cache manifest --------------------------------------------------------------------------


def test_cache_check(tmp_path: Path) -> None:
    cache = AnchorCache(tmp_path / "c")
    settings = {"steps": [0, 2], "blocks": [34, 40], "seed": 7, "prompt": "a woman"}
    with pytest.raises(CacheMismatchError, match="no complete anchor cache"):
        cache.check(settings)
    cache.start(settings)
    cache.save_input(0, 34, "pos", torch.arange(8.0).reshape(1, 2, 4))
    with pytest.raises(CacheMismatchError, match="no complete"):
        cache.check(settings)  # the anchor did not finish
    cache.finish()
    cache.check(settings)
    assert torch.equal(cache.load_input(0, 34, "pos", "cpu"), torch.arange(8.0).reshape(1, 2, 4))
    assert cache.manifest()["format"] == 2

    changed = {**settings, "steps": [0, 4]}
    with pytest.raises(CacheMismatchError) as e:
        cache.check(changed)
    assert "steps" in str(e.value) and "[0, 2]" in str(e.value) and "[0, 4]" in str(e.value)
    assert "seed" not in str(e.value) and "prompt" not in str(e.value)

    with pytest.raises(CacheMismatchError, match="seed"):
        cache.check({**settings, "seed": 8})

    # starting under other settings throws the old tensors away
    cache.start(changed)
    assert not list(cache.root.glob("*.safetensors"))
    with pytest.raises(CacheMismatchError):
        cache.check(changed)
    with pytest.raises(CacheMismatchError, match="x_s000_b034_pos"):
        cache.load_input(0, 34, "pos", "cpu")
    with pytest.raises(CacheMismatchError, match="maps_s000"):
        cache.load_maps(0, "cpu")


def test_attention_backend_order() -> None:
    from torch.nn.attention import SDPBackend

    from engine.models.attention import backend_order

    assert backend_order("")[:3] == [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION,
                                     SDPBackend.EFFICIENT_ATTENTION]
    order = backend_order("flash")
    assert order[0] == SDPBackend.FLASH_ATTENTION and len(set(order)) == 4
    with pytest.raises(ValueError, match="POSEGEN_ATTENTION='fast'.*cudnn"):
        backend_order("fast")
