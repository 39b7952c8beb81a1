from __future__ import annotations

import numpy as np
import pytest

from engine.chunk_plan import ChunkSpec, make_plan
from engine.merge import merge_chunks

TINY = ChunkSpec(frames=17, head=5, tail=4)


def constant(value: int, frames: int = 17, size: tuple[int, int] = (2, 3)) -> np.ndarray:
    return np.full((frames, *size, 3), value, dtype=np.uint8)


def test_cross_fade_by_hand() -> None:
    # L = 40, N = 17, Hd = 5, Tl = 4: K = 3, starts 0, 12, 25, covered 42.
    plan = make_plan(40, TINY)
    assert [c.start for c in plan.chunks] == [0, 12, 25]
    out = merge_chunks([constant(0), constant(100), constant(200)], plan)
    assert out.shape == (40, 2, 3, 3) and out.dtype == np.uint8
    expected = (
        [0] * 12
        + [0, 25, 50, 75, 100]  # older weight 1, .75, .5, .25, 0 over Hd = 5
        + [100] * 8
        + [100, 133, 166, 200]  # older weight 1, 2/3, 1/3, 0 over Tl = 4; truncated
        + [200] * 11
    )
    assert len(expected) == 40
    assert out[:, 0, 0, 0].tolist() == expected
    assert (out == out[:, :1, :1, :1]).all()  # every pixel and channel alike


def test_fade_follows_each_pixel() -> None:
    plan = make_plan(29, TINY)  # K = 3 reaches 42 > 29: cut to 29
    a = constant(10)
    a[..., 1] = 250
    out = merge_chunks([a, constant(90), constant(30)], plan)
    assert len(out) == plan.output_frames == 29
    assert out[14, 0, 0].tolist() == [50, 170, 50]  # halfway through the head fade


def test_single_chunk_is_cut_to_length() -> None:
    plan = make_plan(10, TINY)
    frames = np.arange(17, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    out = merge_chunks([frames], plan)
    assert out[:, 0, 0, 0].tolist() == list(range(10))


def test_default_spec_length() -> None:
    plan = make_plan(300)
    out = merge_chunks([constant(i * 40, 81, (1, 1)) for i in range(5)], plan)
    assert len(out) == plan.output_frames == 300
    assert out[59, 0, 0, 0] == 0 and out[81, 0, 0, 0] == 40  # chunk 1 alone after the fade


def test_validation() -> None:
    plan = make_plan(40, TINY)
    with pytest.raises(ValueError, match="all 3 chunk videos, got 2"):
        merge_chunks([constant(0), constant(0)], plan)
    with pytest.raises(ValueError, match="chunk 2: frame size"):
        merge_chunks([constant(0), constant(0), constant(0, size=(4, 4))], plan)
    with pytest.raises(ValueError, match="chunk 1: has 16 frames"):
        merge_chunks([constant(0), constant(0, frames=16), constant(0)], plan)
    with pytest.raises(ValueError, match="uint8"):
        merge_chunks([constant(0), constant(0).astype(np.float32), constant(0)], plan)
