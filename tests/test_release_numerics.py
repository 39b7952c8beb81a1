"""ENGINE-SPEC section 10, rule by rule: the release's arithmetic.

Each expectation is worked out here from the words of the spec (by hand, or by a
plain re-statement of the rule in the test), never from the engine's helpers. Where
the release's own library call is at hand (torchvision for the input transform), the
engine is also compared against that call.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from engine.chunk_plan import ChunkSpec, make_plan
from engine.media import center_crop_resize, to_uint8_frames
from engine.merge import merge_chunks
from engine.models.attention import keyword_map, otsu_foreground

# -- Decoded frames to uint8: ((x + 1) * 127.5), clipped to [0, 255], truncated ---------


def test_decoded_frames_are_truncated_not_rounded() -> None:
    # (x + 1) * 127.5 for each x, worked out by hand; all are exact in float32.
    cases = {
        0.0: 127,     # 127.5: rounding would give 128
        -0.5: 63,     # 63.75: rounding would give 64
        0.5: 191,     # 191.25
        0.99: 253,    # 253.7325 (float32 product 253.73248...)
        0.999: 254,   # 254.8725: truncation stays below 255 near the top
        1.0: 255,
        1.5: 255,     # clipped
        -1.0: 0,
        -1.2: 0,      # clipped
        -0.996: 0,    # 0.51: rounding would give 1
    }
    xs = torch.tensor(list(cases), dtype=torch.float32)
    video = xs.reshape(1, 1, 1, -1).expand(3, 1, 1, -1)
    frames = to_uint8_frames(video)
    assert frames.dtype == np.uint8
    assert frames[0, 0, :, 0].tolist() == list(cases.values())
    assert (frames[..., 0] == frames[..., 2]).all()


def test_decoded_frames_truncate_bf16_values_after_upcasting() -> None:
    # The release computes ((x.float() + 1) * 127.5): a bf16 decode is upcast first.
    x = torch.tensor([0.00390625, -0.25], dtype=torch.bfloat16)  # both exact in bf16
    frames = to_uint8_frames(x.reshape(1, 1, 1, 2).expand(3, 1, 1, 2))
    # float32: 127.998046875 -> 127 and 95.625 -> 95; in bf16 the first product would
    # round to 128.0 before the cast and give 128.
    assert frames[0, 0, :, 0].tolist() == [127, 95]


# -- Otsu: 256 bins over [0, 1], centres, first maximum, value > centre of bin t* ------


def test_otsu_threshold_is_the_centre_of_bin_t() -> None:
    # Values 0.098 and 0.100 both fall in bin 25 (0.098*256 = 25.09, 0.1*256 = 25.6);
    # 0.9 falls in bin 230. Every split t in 25..229 separates the same two groups, so
    # the between-class variance is the same for all of them and the first, t* = 25,
    # wins (splits before 25 leave class 0 empty: variance 0). The threshold is bin 25's
    # centre, 25.5/256 = 0.0996...: 0.100 is foreground, 0.098 is not, though both sit
    # in bin t* (a "bins after t*" rule would call both background).
    frame = np.array([[0.098, 0.100, 0.098, 0.100],
                      [0.100, 0.900, 0.900, 0.098],
                      [0.900, 0.098, 0.100, 0.900]], dtype=np.float32)
    fg = otsu_foreground(torch.from_numpy(frame[None])).numpy()[0]
    np.testing.assert_array_equal(fg, frame > np.float32(25.5 / 256))
    assert fg[0, 1] and not fg[0, 0] and fg[1, 1]


def test_otsu_value_one_counts_in_the_last_bin() -> None:
    # 1.0 * 256 = 256 is past the last bin edge; the spec puts it in bin 255. Two groups:
    # 0.0 (bin 0) and 1.0 (bin 255): t* = 0, threshold 0.5/256, so every 1.0 is
    # foreground and every 0.0 background.
    frame = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    assert otsu_foreground(frame).tolist() == [[[False, True], [True, False]]]


def _otsu_by_the_rule(values: np.ndarray) -> np.ndarray:
    """The spec's words, in float64 and plain loops: independent of the engine."""
    hist = np.zeros(256)
    for v in values.ravel():
        hist[min(int(v * 256), 255)] += 1
    centres = (np.arange(256) + 0.5) / 256
    best, t_star = -1.0, 0
    for t in range(256):
        w0, w1 = hist[: t + 1].sum(), hist[t + 1:].sum()
        m0 = (hist[: t + 1] * centres[: t + 1]).sum() / w0 if w0 else 0.0
        m1 = (hist[t + 1:] * centres[t + 1:]).sum() / w1 if w1 else 0.0
        between = w0 * w1 * (m0 - m1) ** 2
        if between > best:
            best, t_star = between, t
    return values > centres[t_star]


def test_otsu_matches_the_rule_on_random_maps() -> None:
    rng = np.random.default_rng(7)
    # Two blobs of different brightness plus noise, min-max normalised per frame, as
    # the keyword maps are; several frames at once.
    maps = []
    for _ in range(6):
        m = rng.normal(0.3, 0.1, (6, 9))
        m[1:4, 2:6] += rng.uniform(0.3, 0.8)
        m = (m - m.min()) / (m.max() - m.min())
        maps.append(m.astype(np.float32))
    maps_arr = np.stack(maps)
    got = otsu_foreground(torch.from_numpy(maps_arr)).numpy()
    for f in range(len(maps_arr)):
        np.testing.assert_array_equal(got[f], _otsu_by_the_rule(maps_arr[f]), err_msg=f"frame {f}")


def test_keyword_map_is_min_max_normalised_per_frame() -> None:
    # The release divides by (max - min + 1e-6); a flat frame becomes all zeros.
    q = torch.zeros(1, 4, 2, 2)
    q[0, :2, :, 0] = torch.tensor([[1.0, 3.0], [2.0, 6.0]])  # frame 0: head-means 2 and 4
    k = torch.tensor([[[2.0, 0.0], [2.0, 0.0]]])  # (1, heads, d): q.k = 2*q0, / sqrt(2)
    m = keyword_map(q, k, (2, 1, 2))
    scale = 2 / 2 ** 0.5
    lo, hi = 2 * scale, 4 * scale
    assert m[0].flatten().tolist() == pytest.approx([0.0, (hi - lo) / (hi - lo + 1e-6)])
    assert m[1].flatten().tolist() == [0.0, 0.0]


# -- Merge: float weights linspace(1, 0, overlap), blend, truncate ---------------------


def test_merge_truncates_the_cross_fade() -> None:
    # N 13, head 5, tail 4, 30 frames: K = 2*ceil(17/17)+1 = 3 chunks starting at 0,
    # 13-5 = 8 and 26-5-4 = 17. Over chunk 1's 5-frame head (frames 8..12) the older
    # weights are 1, .75, .5, .25, 0: older 100 and newer 203 give 100, 125.75, 151.5,
    # 177.25, 203, truncated to 100, 125, 151, 177, 203 (np.rint: 126, 152, 177).
    plan = make_plan(30, ChunkSpec(13, 5, 4), None, 0, True)
    assert [c.start for c in plan.chunks] == [0, 8, 17]

    def const(v: int) -> np.ndarray:
        return np.full((13, 1, 1, 3), v, dtype=np.uint8)

    out = merge_chunks([const(100), const(203), const(7)], plan)[:, 0, 0, 0].tolist()
    assert out[:13] == [100] * 8 + [100, 125, 151, 177, 203]
    # Chunk 2's 4-frame overlap (frames 17..20): weights 1, 2/3, 1/3, 0 on 203 against
    # 7: 203, 137.66.., 72.33.., 7 -> 203, 137, 72, 7.
    assert out[13:21] == [203] * 4 + [203, 137, 72, 7]
    assert out[21:] == [7] * 9


def test_merge_blend_matches_the_rule_on_random_frames() -> None:
    rng = np.random.default_rng(3)
    plan = make_plan(60, ChunkSpec(13, 5, 4), None, 0, True)
    chunks = [rng.integers(0, 256, (13, 2, 3, 3), dtype=np.uint8) for _ in plan.chunks]
    out = merge_chunks(chunks, plan)
    for chunk, frames in zip(plan.chunks[1:], chunks[1:], strict=True):
        n = chunk.overlap_prev
        older = chunks[chunk.index - 1][-n:]
        for j in range(n):
            w = 1.0 - j / (n - 1)  # linspace(1, 0, n), in float64
            expected = (w * older[j].astype(np.float64) + (1.0 - w) * frames[j]).astype(np.uint8)
            if chunk.start + j < len(out):
                np.testing.assert_array_equal(out[chunk.start + j], expected)


# -- Input crop and resize: uint8 resize rounded back to uint8, then x / 255 * 2 - 1 ----


def test_resize_rounds_to_uint8_before_scaling() -> None:
    # A 2x2 -> 1x1 antialiased bilinear downscale averages the 4 pixels. Channel 0:
    # 0, 1, 0, 1 -> 0.5 -> rounds (half to even) to 0 -> -1. Channel 1: 0, 1, 1, 1 ->
    # 0.75 -> 1 -> 1/255*2-1. Channel 2: 10, 11, 10, 11 -> 10.5 -> 10. Resizing in
    # float would give 0.5/127.5 - 1 = -0.99608 for channel 0.
    img = np.array([[[0, 0, 10], [1, 1, 11]], [[0, 1, 10], [1, 1, 11]]], dtype=np.uint8)
    out = center_crop_resize(img, 1, 1)[:, 0, 0, 0]
    f32 = np.float32
    expected = [f32(0) / f32(255) * f32(2) - f32(1), f32(1) / f32(255) * f32(2) - f32(1),
                f32(10) / f32(255) * f32(2) - f32(1)]
    assert out.tolist() == [float(v) for v in expected]


def test_scaling_is_x_over_255_times_2_minus_1() -> None:
    # No resize (same size): every uint8 value maps as float32 x / 255 * 2 - 1.
    values = np.arange(256, dtype=np.uint8)
    img = np.stack([values, values[::-1], values], axis=-1).reshape(16, 16, 3)
    out = center_crop_resize(img, 16, 16)
    expected = torch.from_numpy(img).permute(2, 0, 1).float() / 255 * 2 - 1
    assert torch.equal(out[:, 0], expected)


@pytest.mark.parametrize("src", [(37, 23), (23, 37), (64, 36), (33, 33), (200, 90)])
def test_crop_and_resize_equal_the_release_transform(src: tuple[int, int]) -> None:
    """The release's own transform: RandomResizedCrop(scale 1, ratio W/H) on uint8, then
    (x / 255.0) * 2.0 - 1.0; its crop falls back to the central one."""
    from engine.compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    import torchvision.transforms as T

    height, width = 32, 18
    rng = np.random.default_rng(sum(src))
    frames = rng.integers(0, 256, (3, *src, 3), dtype=np.uint8)
    release = T.Compose([
        T.RandomResizedCrop(size=(height, width), scale=(1.0, 1.0),
                            ratio=(width / height, width / height)),
        T.Lambda(lambda x: (x / 255.0) * 2.0 - 1.0)])
    expected = release(torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous())
    got = center_crop_resize(frames, height, width)
    assert torch.equal(got, expected.permute(1, 0, 2, 3))


# -- bf16 path: timestep cast to bf16, latents / CFG mix / scheduler step in bf16 -------


class _RecordingDiT(nn.Module):
    """A stand-in DiT: a fixed function of its inputs that records what it was given."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.patch_embedding = nn.Conv3d(36, 4, 1).to(dtype)
        self.calls: list[tuple[torch.dtype, torch.Tensor, torch.Tensor]] = []

    def forward(self, latents, cond, hand, ref, context, timestep, hook=None):
        self.calls.append((latents.dtype, timestep.clone(), context.clone()))
        # Different for the two CFG passes (context) and every step (timestep).
        return (latents * 0.5 + context.mean() + timestep / 1000).to(latents.dtype)


def _inputs(dtype: torch.dtype, ctx_pos: float = 0.25, ctx_neg: float = -0.5):
    from engine.sampler import ChunkInputs

    shape = (1, 20, 2, 2, 2)
    return ChunkInputs(cond=torch.zeros(shape, dtype=dtype), hand=None, ref=None,
                       context_pos=torch.full((1, 1, 1), ctx_pos, dtype=dtype),
                       context_neg=torch.full((1, 1, 1), ctx_neg, dtype=dtype))


def test_bf16_path_casts_timesteps_and_keeps_latents_in_bf16() -> None:
    from engine.sampler import sample, scheduler_for

    steps, cfg, seed = 4, 5.0, 42
    dit = _RecordingDiT(torch.bfloat16)
    out = sample(dit, _inputs(torch.bfloat16), seed=seed, steps=steps, cfg_scale=cfg, shift=5.0,
                 device="cpu")
    assert out.dtype == torch.bfloat16
    sched = scheduler_for(steps, 5.0)
    # The model sees bf16 timesteps: at 25 steps the second is 991.735 -> 992.
    assert dit.calls[0][1].dtype == torch.bfloat16
    assert [float(c[1]) for c in dit.calls[::2]] == \
        [float(t.to(torch.bfloat16)) for t in sched.timesteps]
    assert float(scheduler_for(25, 5.0).timesteps[1].to(torch.bfloat16)) == 992.0
    assert all(c[0] == torch.bfloat16 for c in dit.calls)

    # The same loop written from the spec's words: float32 CPU noise cast to bf16; per
    # step, flow = neg + cfg * (pos - neg) in bf16, latents += flow * (sigma' - sigma).
    lat = torch.randn((1, 16, 2, 2, 2), generator=torch.Generator().manual_seed(seed),
                      dtype=torch.float32).to(torch.bfloat16)
    sigmas = list(sched.sigmas) + [torch.tensor(0.0)]
    for i, t in enumerate(sched.timesteps):
        tb = t.to(torch.bfloat16).reshape(1)
        pos = (lat * 0.5 + torch.tensor(0.25, dtype=torch.bfloat16) + tb / 1000)
        neg = (lat * 0.5 + torch.tensor(-0.5, dtype=torch.bfloat16) + tb / 1000)
        flow = neg + cfg * (pos - neg)
        lat = lat + flow * (sigmas[i + 1] - sigmas[i])
        assert lat.dtype == torch.bfloat16
    assert torch.equal(out, lat)


def test_float32_path_is_unchanged_in_float32() -> None:
    from engine.sampler import sample

    dit = _RecordingDiT(torch.float32)
    out = sample(dit, _inputs(torch.float32), seed=1, steps=3, cfg_scale=5.0, shift=5.0,
                 device="cpu")
    assert out.dtype == torch.float32
    assert dit.calls[0][1].dtype == torch.float32


def test_bf16_resume_continues_bit_exactly(tmp_path: Path) -> None:
    from engine.sampler import sample

    kwargs = dict(seed=3, steps=5, cfg_scale=5.0, shift=5.0, device="cpu",
                  state_key={"chunk": 0})
    whole = sample(_RecordingDiT(torch.bfloat16), _inputs(torch.bfloat16), **kwargs)
    state = tmp_path / "state.safetensors"
    calls = iter(range(100))
    stopped = sample(_RecordingDiT(torch.bfloat16), _inputs(torch.bfloat16), state_path=state,
                     should_stop=lambda: next(calls) >= 2, **kwargs)
    assert stopped is None and state.exists()
    resumed = sample(_RecordingDiT(torch.bfloat16), _inputs(torch.bfloat16), state_path=state,
                     **kwargs)
    assert torch.equal(resumed, whole)


def test_cfg_one_runs_only_the_positive_pass() -> None:
    from engine.sampler import sample

    dit = _RecordingDiT(torch.float32)
    sample(dit, _inputs(torch.float32), seed=1, steps=3, cfg_scale=1.0, shift=5.0, device="cpu")
    assert len(dit.calls) == 3
    assert all(float(c[2].mean()) == 0.25 for c in dit.calls)  # the positive context only


# -- LoRA layout: only weights the release's merge can fold in -------------------------


def test_tiny_checkpoint_puts_lora_only_on_release_mergeable_weights(tiny_ckpt: Path) -> None:
    """The release merges LoRA into 2-D (linear) weights and 1x1 conv weights only."""
    from engine.checkpoint.dit_loader import read_shards

    for kind in ("720p-81f-base", "720p-81f-cond"):
        raw = read_shards(tiny_ckpt / kind)
        pairs = [k[: -len(".lora_A.default.weight")] for k in raw
                 if k.endswith(".lora_A.default.weight")]
        assert len(pairs) > 10
        for layer in pairs:
            base = raw[f"{layer}.base_layer.weight"]
            one_by_one_conv = base.ndim == 4 and tuple(base.shape[2:]) == (1, 1)
            assert base.ndim == 2 or one_by_one_conv, f"{kind}: {layer} {tuple(base.shape)}"
        assert not any("hand_patch_embedding" in k and "lora" in k for k in raw)


# -- VAE tiling: conditions and decode in tiles (30, 52) / (15, 26); reference untiled --


def test_model_set_tiles_as_the_release(tiny_ckpt: Path) -> None:
    """Condition encodes and the decode equal diffsynth's own tiled calls with the
    release's tile (30, 52) and stride (15, 26); the reference image is encoded whole.
    At 512x288 (latent 64x36) the grid has 4 rows of tiles, so the seams matter."""
    from engine.checkpoint.layout import CheckpointLayout
    from engine.model_set import ModelSet

    models = ModelSet(CheckpointLayout(tiny_ckpt), "cpu", torch.float32, None, "release")
    # One frame keeps it quick on 2 cores; the tiles are spatial.
    video = torch.rand(3, 1, 512, 288, generator=torch.Generator().manual_seed(0)) * 2 - 1
    vae = models.vae
    tiled = vae.encode([video], device="cpu", tiled=True, tile_size=(30, 52),
                       tile_stride=(15, 26))[0]
    whole = vae.encode([video], device="cpu", tiled=False)[0]
    assert not torch.equal(tiled, whole)  # the tiling really changes the numbers
    assert torch.equal(models.encode_video(video)[0], tiled)
    assert torch.equal(models.encode_video(video, tiled=False)[0], whole)

    latents = tiled[None]
    expected = vae.decode([tiled], device="cpu", tiled=True, tile_size=(30, 52),
                          tile_stride=(15, 26))[0]
    assert torch.equal(models.decode(latents), expected)

    untiled = ModelSet(CheckpointLayout(tiny_ckpt), "cpu", torch.float32, None, "none")
    assert torch.equal(untiled.encode_video(video)[0], whole)


def test_run_fingerprint_names_the_numerics(tiny_ckpt: Path, sample_dir: Path,
                                            tmp_path: Path) -> None:
    """A workspace made under other arithmetic rules is never mixed with this run."""
    import json

    from engine.job import Job, JobError, JobInputs, JobSettings

    inputs = JobInputs(image=sample_dir / "reference.png", pose=sample_dir / "pose.mp4",
                       hand=sample_dir / "hand.mp4",
                       prompt=(sample_dir / "prompt.txt").read_text())
    settings = JobSettings(height=64, width=32, frames=17, head=5, tail=4,
                           share_blocks=(2, 4))
    Job(tmp_path, inputs, settings, ckpt=tiny_ckpt).prepare()
    run_file = tmp_path / "run.json"
    run = json.loads(run_file.read_text())
    run["fingerprint"].pop("numerics")  # as an older engine wrote it
    run_file.write_text(json.dumps(run))
    with pytest.raises(JobError, match="numerics"):
        Job(tmp_path, inputs, settings, ckpt=tiny_ckpt).prepare()
    with pytest.raises(JobError, match="vae-tiling"):
        JobSettings(vae_tiling="diffsynth").validate()


def test_lora_merges_in_the_checkpoint_dtype() -> None:
    """A bf16 checkpoint merges as the release does: B @ A as a bf16 matmul, then a bf16
    add to the base weight; not in float32 with a single rounding at the end."""
    from engine.checkpoint.dit_loader import merge_lora

    g = torch.Generator().manual_seed(5)
    w = (torch.randn(48, 40, generator=g) * 0.05).to(torch.bfloat16)
    a = (torch.randn(8, 40, generator=g) * 0.3).to(torch.bfloat16)
    b = (torch.randn(48, 8, generator=g) * 0.3).to(torch.bfloat16)
    raw = {"pipe.dit.blocks.0.ffn.0.base_layer.weight": w,
           "pipe.dit.blocks.0.ffn.0.lora_A.default.weight": a,
           "pipe.dit.blocks.0.ffn.0.lora_B.default.weight": b}
    merged = merge_lora(raw)["blocks.0.ffn.0.weight"]
    release = w + 1.0 * torch.mm(b, a)  # every operand and result in bf16
    assert merged.dtype == torch.bfloat16
    assert torch.equal(merged, release)
    in_float32 = (w.float() + b.float() @ a.float()).to(torch.bfloat16)
    assert not torch.equal(merged, in_float32)  # the rule is visible at this size


