"""engine.vae_tiling: the release's tile grid, and diffsynth's tiled VAE numbers with tiles
batched, on the tiny random Wan VAE (dim 8) on the CPU."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from engine import vae_tiling as vt
from engine.checkpoint.encoders import load_vae
from engine.checkpoint.tiny_encoders import write_tiny_vae

ROOT = Path(__file__).resolve().parent.parent
RELEASE = dict(tile_size=vt.RELEASE_TILE, tile_stride=vt.RELEASE_STRIDE)
# A small grid in latent units for 96x128 px (latent 12x16) with overlaps in both
# directions and clipped edge tiles: rows (0,6) (4,10) (8,12), columns (0,8) (5,13) (10,16).
SMALL_TILE, SMALL_STRIDE = (6, 8), (4, 5)


@pytest.fixture(scope="module")
def vae_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vae") / "Wan2.1_VAE.pth"
    write_tiny_vae(path, seed=0)
    return path


@pytest.fixture(scope="module", params=[torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def vae(request: pytest.FixtureRequest, vae_path: Path):
    return load_vae(vae_path, "cpu", request.param)


def _video(vae, height: int, width: int, frames: int = 5, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    video = torch.rand(1, 3, frames, height, width, generator=g) * 2 - 1
    return video.to(vae.model.conv1.weight.dtype)


def _uint8(x: Tensor) -> Tensor:
    """The release's frames: ((x + 1) * 127.5), clipped, truncated."""
    return ((x.float() + 1) * 127.5).clamp(0, 255).to(torch.uint8)


# ----------------------------------------------------------------------------- grid


def test_release_decode_grid_1280x720() -> None:
    # Latent 160 x 90, tile 30 x 52, stride 15 x 26.
    # Rows: starts 0, 15, ..., 150. Start 150 is skipped: 150 - 15 + 30 = 165 >= 160.
    # Start 135 is kept (120 + 30 = 150 < 160) and clipped to 160: 10 rows, last 25 high.
    rows = [(0, 30), (15, 45), (30, 60), (45, 75), (60, 90), (75, 105), (90, 120),
            (105, 135), (120, 150), (135, 160)]
    # Columns: starts 0, 26, 52, 78. 78 is skipped (52 + 52 = 104 >= 90); 52 is kept
    # (26 + 52 = 78 < 90) and clipped to 90, 38 wide.
    cols = [(0, 52), (26, 78), (52, 90)]
    expected = [(h0, h1, w0, w1) for h0, h1 in rows for w0, w1 in cols]  # row-major
    assert len(expected) == 30
    assert vt.tile_grid((160, 90), (30, 52), (15, 26)) == expected


def test_release_encode_grid_1280x720_in_pixels() -> None:
    # Pixels 1280 x 720, tile 240 x 416, stride 120 x 208 (latent units x 8).
    # Rows: 1200 is skipped (1080 + 240 = 1320 >= 1280); 1080 kept (960 + 240 = 1200 < 1280),
    # clipped to 1280. Columns: 624 skipped (416 + 416 = 832 >= 720); 416 kept (208 + 416 =
    # 624 < 720), clipped to 720. The decode grid's origins x 8.
    rows = [(0, 240), (120, 360), (240, 480), (360, 600), (480, 720), (600, 840), (720, 960),
            (840, 1080), (960, 1200), (1080, 1280)]
    cols = [(0, 416), (208, 624), (416, 720)]
    expected = [(h0, h1, w0, w1) for h0, h1 in rows for w0, w1 in cols]
    assert vt.tile_grid((1280, 720), (240, 416), (120, 208)) == expected
    latent = vt.tile_grid((160, 90), (30, 52), (15, 26))
    assert [(t[0] * 8, t[2] * 8) for t in latent] == [(t[0], t[2]) for t in expected]


def test_release_grid_512x288() -> None:
    # Latent 64 x 36. Rows: 0 kept (first); 15 kept (0 + 30 = 30 < 64); 30 kept
    # (15 + 30 = 45 < 64); 45 kept (30 + 30 = 60 < 64), clipped to 64 (19 high);
    # 60 skipped (45 + 30 = 75 >= 64). Columns: 0 kept, clipped to 36; 26 skipped
    # (0 + 52 = 52 >= 36).
    expected = [(0, 30, 0, 36), (15, 45, 0, 36), (30, 60, 0, 36), (45, 64, 0, 36)]
    assert vt.tile_grid((64, 36), (30, 52), (15, 26)) == expected
    # The same in pixels, for the encode of 512 x 288.
    assert vt.tile_grid((512, 288), (240, 416), (120, 208)) == [
        (0, 240, 0, 288), (120, 360, 0, 288), (240, 480, 0, 288), (360, 512, 0, 288)]


def test_small_grids() -> None:
    assert vt.tile_grid((8, 4), (30, 52), (15, 26)) == [(0, 8, 0, 4)]  # smaller than a tile
    # 12 x 16 with tile 6 x 8, stride 4 x 5: rows 0, 4, 8 (8 - 4 + 6 = 10 < 12, clipped to
    # 12); columns 0, 5, 10 (10 - 5 + 8 = 13 < 16, clipped to 16), 15 skipped (18 >= 16).
    rows, cols = [(0, 6), (4, 10), (8, 12)], [(0, 8), (5, 13), (10, 16)]
    assert vt.tile_grid((12, 16), SMALL_TILE, SMALL_STRIDE) == [
        (h0, h1, w0, w1) for h0, h1 in rows for w0, w1 in cols]
    with pytest.raises(ValueError):
        vt.tile_grid((12, 16), (0, 8), (4, 5))


def test_batch_plan_groups_shapes_in_task_order() -> None:
    tiles = vt.tile_grid((160, 90), (30, 52), (15, 26))
    plan = vt.batch_plan(tiles, 8)
    assert sorted(j for batch in plan for j in batch) == list(range(30))
    for batch in plan:
        assert len(batch) <= 8 and batch == sorted(batch)
        assert len({(tiles[j][1] - tiles[j][0], tiles[j][3] - tiles[j][2]) for j in batch}) == 1
    assert [len(b) for b in vt.batch_plan(tiles, 30)] == [18, 9, 2, 1]
    assert all(len(b) == 1 for b in vt.batch_plan(tiles, 1))


# ----------------------------------------------------------------------------- diffsynth


@pytest.mark.parametrize("size", [(368, 64), (96, 128)], ids=["release", "small-tiles"])
def test_max_batch_1_is_diffsynth_bit_for_bit(vae, size: tuple[int, int]) -> None:
    # 368 x 64 px = latent 46 x 8: release rows (0,30) (15,45) (30,46 clipped), one clipped
    # column. 96 x 128 px: the 3 x 3 small grid, overlapping both ways, clipped edges.
    tiles = RELEASE if size == (368, 64) else dict(tile_size=SMALL_TILE,
                                                   tile_stride=SMALL_STRIDE)
    video = _video(vae, *size)
    ref = vae.encode([video[0]], "cpu", tiled=True, **tiles)
    ours = vt.tiled_encode(vae, video, "cpu", tiles["tile_size"], tiles["tile_stride"],
                           max_batch=1)
    assert ours.dtype == video.dtype and torch.equal(ours, ref)
    ref_video = vae.decode([ref[0]], "cpu", tiled=True, **tiles)
    ours_video = vt.tiled_decode(vae, ref, "cpu", tiles["tile_size"], tiles["tile_stride"],
                                 max_batch=1)
    assert ours_video.shape == video.shape and torch.equal(ours_video, ref_video)


@pytest.mark.parametrize("size", [(368, 64), (96, 128)], ids=["release", "small-tiles"])
def test_batched_matches_sequential(vae, size: tuple[int, int]) -> None:
    tile, stride = (vt.RELEASE_TILE, vt.RELEASE_STRIDE) if size == (368, 64) else \
        (SMALL_TILE, SMALL_STRIDE)
    video = _video(vae, *size, seed=1)
    lat1 = vt.tiled_encode(vae, video, "cpu", tile, stride, max_batch=1)
    dec1 = vt.tiled_decode(vae, lat1, "cpu", tile, stride, max_batch=1)
    for max_batch in (3, 100):  # groups split (small grid: 4 same-shape tiles), and whole
        lat = vt.tiled_encode(vae, video, "cpu", tile, stride, max_batch=max_batch)
        dec = vt.tiled_decode(vae, lat1, "cpu", tile, stride, max_batch=max_batch)
        lat_diff = (lat.float() - lat1.float()).abs().max().item()
        dec_diff = (dec.float() - dec1.float()).abs().max().item()
        levels = (_uint8(dec).int() - _uint8(dec1).int()).abs()
        changed = int((levels > 0).sum())
        print(f"\n{video.dtype} {size} max_batch={max_batch}: latents max|d| {lat_diff:.3g}, "
              f"video max|d| {dec_diff:.3g}, uint8 changed {changed}/{levels.numel()}")
        # CPU float32 convolutions of a batch sum in another order than one tile's
        # (measured: latents 4.8e-7, video 6.9e-6, ~5e-5 of the uint8 values off by
        # one level); bf16 measured exactly equal. Bound: float noise, never more.
        assert lat_diff <= (1e-5 if video.dtype == torch.float32 else 2 ** -6)
        assert dec_diff <= (1e-4 if video.dtype == torch.float32 else 2 ** -6)
        assert int(levels.max()) <= 1 and changed <= 2e-4 * levels.numel()


class _StubModel(nn.Module):
    """A batch-invariant stand-in for VideoVAE_: copies and elementwise ops only, so a
    batch gives each tile exactly its own numbers. Each output element also depends on
    its position in the tile, so overlapping tiles disagree and the order of the
    blending adds shows in the last bits."""

    def __init__(self) -> None:
        super().__init__()
        self.z_dim = 16

    @staticmethod
    def _ramp(x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        ramp = (torch.arange(h, dtype=torch.float32)[:, None] * 0.37
                + torch.arange(w, dtype=torch.float32) * 0.11)
        return ramp.to(x.dtype)

    def encode(self, x: Tensor, scale: object) -> Tensor:
        z = x[:, :, ::4, ::8, ::8].repeat(1, 6, 1, 1, 1)[:, :16]
        return z * 1.3 + self._ramp(z) / 7

    def decode(self, z: Tensor, scale: object) -> Tensor:
        x = z[:, :3].repeat_interleave(4, dim=2)[:, :, 3:]
        x = x.repeat_interleave(8, dim=3).repeat_interleave(8, dim=4)
        return x * 0.3 + self._ramp(x) / 300


def _blend_in_order(vae, z: Tensor, tiles: list[tuple[int, int, int, int]],
                    order: list[int], tile: tuple[int, int], stride: tuple[int, int]) -> Tensor:
    """diffsynth's tiled_decode loop over the tasks in another order."""
    _, _, frames, height, width = z.shape
    values = torch.zeros(1, 3, frames * 4 - 3, height * 8, width * 8, dtype=z.dtype)
    weight = torch.zeros(1, 1, frames * 4 - 3, height * 8, width * 8, dtype=z.dtype)
    for j in order:
        h0, h1, w0, w1 = tiles[j]
        out = vae.model.decode(z[:, :, :, h0:h1, w0:w1], vae.scale)
        mask = vae.build_mask(out, (h0 == 0, h1 >= height, w0 == 0, w1 >= width),
                              ((tile[0] - stride[0]) * 8, (tile[1] - stride[1]) * 8)
                              ).to(z.dtype)
        region = (..., slice(h0 * 8, h0 * 8 + out.shape[3]), slice(w0 * 8, w0 * 8 + out.shape[4]))
        values[region] += out * mask
        weight[region] += mask
    return (values / weight).clamp_(-1, 1)


def test_blending_keeps_diffsynth_order_when_batched(vae_path: Path) -> None:
    """Where four tiles overlap, adding in another order changes the last bits; batched
    runs blend every tile after the earlier tiles it overlaps, so they stay exact."""
    vae = load_vae(vae_path, "cpu", torch.bfloat16)
    vae.model = _StubModel()
    tile, stride = SMALL_TILE, (3, 4)  # stride half the tile: four tiles over most pixels
    g = torch.Generator().manual_seed(3)
    z = (torch.randn(1, 16, 2, 13, 18, generator=g)).to(torch.bfloat16)
    tiles = vt.tile_grid((13, 18), tile, stride)
    ref = vae.decode([z[0]], "cpu", tiled=True, tile_size=tile, tile_stride=stride)
    assert torch.equal(_blend_in_order(vae, z, tiles, list(range(len(tiles))), tile, stride),
                       ref)
    grouped = [j for batch in vt.batch_plan(tiles, len(tiles)) for j in batch]
    assert grouped != sorted(grouped)
    # The order the batches come in, and the reverse order, both give other numbers ...
    assert not torch.equal(_blend_in_order(vae, z, tiles, grouped, tile, stride), ref)
    assert not torch.equal(_blend_in_order(vae, z, tiles, grouped[::-1], tile, stride), ref)
    # ... but tiled_decode at every batch size matches diffsynth exactly.
    for max_batch in (1, 2, 3, 5, len(tiles)):
        assert torch.equal(vt.tiled_decode(vae, z, "cpu", tile, stride, max_batch), ref)
    video = torch.rand(1, 3, 5, 13 * 8, 18 * 8, generator=g).to(torch.bfloat16) * 2 - 1
    ref_lat = vae.encode([video[0]], "cpu", tiled=True, tile_size=tile, tile_stride=stride)
    for max_batch in (1, 3, len(tiles)):
        assert torch.equal(vt.tiled_encode(vae, video, "cpu", tile, stride, max_batch), ref_lat)


# ----------------------------------------------------------------------------- edges


def test_smaller_than_one_tile_is_untiled(vae) -> None:
    video = _video(vae, 64, 32)  # latent 8 x 4: one tile, all borders at the bounds
    lat = vt.tiled_encode(vae, video, "cpu", max_batch=4)
    assert torch.equal(lat, vae.model.encode(video, vae.scale))  # mask 1, weight 1
    dec = vt.tiled_decode(vae, lat, "cpu", max_batch=4)
    assert torch.equal(dec, vae.model.decode(lat, vae.scale).clamp_(-1, 1))


def test_every_pixel_is_covered_and_shapes() -> None:
    for size in [(46, 8), (13, 18), (160, 90), (17, 53), (31, 31)]:
        covered = torch.zeros(size, dtype=torch.int32)
        for h0, h1, w0, w1 in vt.tile_grid(size, (30, 52), (15, 26)):
            # an edge tile is longer than its ramp (or alone in its direction: no ramp)
            assert h1 - h0 > 30 - 15 or (h0, h1) == (0, size[0])
            assert w1 - w0 > 52 - 26 or (w0, w1) == (0, size[1])
            covered[h0:h1, w0:w1] += 1
        assert int(covered.min()) >= 1


def test_bad_inputs(vae) -> None:
    with pytest.raises(ValueError, match="divisible"):
        vt.tiled_encode(vae, _video(vae, 60, 32), "cpu")
    with pytest.raises(ValueError, match="expected a video"):
        vt.tiled_encode(vae, _video(vae, 64, 32)[0], "cpu")
    with pytest.raises(ValueError, match="expected latents"):
        vt.tiled_decode(vae, torch.zeros(1, 4, 2, 8, 8), "cpu")
    with pytest.raises(ValueError, match="max_batch"):
        vt.tiled_decode(vae, torch.zeros(1, 16, 2, 8, 8), "cpu", max_batch=0)
    assert vt.default_max_batch(torch.device("cpu")) == 1
    assert vt.default_max_batch(torch.device("cuda")) == vt.DEFAULT_CUDA_MAX_BATCH


def test_out_of_memory_retries_one_tile_at_a_time(vae, monkeypatch) -> None:
    """A batch that does not fit the GPU is run again tile by tile, with the same result."""
    video = _video(vae, 368, 64)
    expected = vt.tiled_encode(vae, video, "cpu", max_batch=1)
    calls = []
    real = vae.model.encode

    def encode(x, scale):
        calls.append(x.shape[0])
        if x.shape[0] > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(x, scale)

    monkeypatch.setattr(vae.model, "encode", encode)
    got = vt.tiled_encode(vae, video, "cpu", max_batch=4)
    assert calls[0] > 1 and set(calls[1:]) == {1}
    assert torch.equal(got, expected)


# ----------------------------------------------------------------------------- bench


def test_bench_runs_at_tiny_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    # In process: a subprocess would spend 5 s importing diffsynth again.
    for name in ("TQDM_DISABLE", "PYTORCH_CUDA_ALLOC_CONF"):  # set by the bench's import
        monkeypatch.setenv(name, os.environ.get(name, "1" if name == "TQDM_DISABLE" else ""))
    spec = importlib.util.spec_from_file_location("bench_vae_tiling",
                                                  ROOT / "bench" / "vae_tiling.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "vae_tiling.json"
    assert bench.main(["--size", "368x64", "--frames", "5", "--dim", "8", "--device", "cpu",
                       "--dtype", "bf16", "--batches", "1,all", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["setup"]["tiles"] == 3 and result["setup"]["shape_groups"] == [2, 1]
    rows = {r["name"]: r for r in result["rows"]}
    assert set(rows) == {"diffsynth tiled encode", "untiled encode", "diffsynth tiled decode",
                         "untiled decode", "ours encode max_batch=1", "ours decode max_batch=1",
                         "ours encode max_batch=all", "ours decode max_batch=all"}
    assert rows["ours encode max_batch=1"]["equal"] is True
    assert rows["ours decode max_batch=1"]["equal"] is True
    assert rows["ours decode max_batch=1"]["uint8_differ"] == 0
    assert rows["untiled decode"]["uint8_differ"] > 0  # the comparison can see a difference
    assert all(r["seconds"] > 0 for r in rows.values())
    assert "| ours decode max_batch=all |" in capsys.readouterr().out
