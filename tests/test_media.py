from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.media import (
    MediaError,
    center_crop_resize,
    frame_count,
    load_frames,
    read_image,
    read_video,
    save_frames,
    to_uint8_frames,
    video_info,
    write_mp4,
)


def gradient_video(frames: int, height: int, width: int) -> np.ndarray:
    """Smooth content that survives lossy coding; each frame brighter than the last."""
    y = np.linspace(0, 160, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 80, width, dtype=np.float32)[None, :]
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    for f in range(frames):
        out[f, ..., 0] = y + 4 * f
        out[f, ..., 1] = x + 4 * f
        out[f, ..., 2] = 90
    return out


def test_mp4_round_trip(tmp_path: Path) -> None:
    video = gradient_video(12, 48, 64)
    path = tmp_path / "out" / "clip.mp4"
    write_mp4(path, video, fps=24)
    assert [p.name for p in path.parent.iterdir()] == ["clip.mp4"]  # no temp file left
    frames, fps = read_video(path)
    assert frames.shape == video.shape and frames.dtype == np.uint8
    assert fps == pytest.approx(24, abs=0.01)
    assert np.abs(frames.astype(int) - video.astype(int)).mean() < 4
    # Channel order is RGB on both sides: red grows down the frame, green across it.
    assert frames[0, -1, 0, 0] > frames[0, 0, 0, 0] + 100
    assert video_info(path) == (12, pytest.approx(24, abs=0.01), 48, 64)
    assert frame_count(path) == 12


def test_mp4_odd_size(tmp_path: Path) -> None:
    video = gradient_video(3, 33, 21)
    path = tmp_path / "odd.mp4"
    write_mp4(path, video, fps=10)
    frames, _ = read_video(path)
    assert frames.shape[0] == 3 and frames.shape[1:3] in ((33, 21), (34, 22))
    assert np.abs(frames[:, :33, :21].astype(int) - video.astype(int)).mean() < 6


def test_write_mp4_rejects_bad_frames(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="uint8"):
        write_mp4(tmp_path / "bad.mp4", np.zeros((2, 8, 8, 3), np.float32), fps=10)
    assert not (tmp_path / "bad.mp4").exists()
    with pytest.raises(MediaError, match="fps"):
        write_mp4(tmp_path / "bad.mp4", np.zeros((2, 8, 8, 3), np.uint8), fps=0)


def test_center_crop_is_centred_wide() -> None:
    # 20 x 60: red | black with a white centre band | blue; a square crop keeps the middle.
    img = np.zeros((20, 60, 3), dtype=np.uint8)
    img[:, :20] = (255, 0, 0)
    img[:, 40:] = (0, 0, 255)
    img[:, 25:35] = 255
    out = center_crop_resize(img, 10, 10)
    assert out.shape == (3, 1, 10, 10) and out.dtype == torch.float32
    assert out.min() >= -1 and out.max() <= 1
    assert torch.allclose(out[:, 0, :, 4:6], torch.ones(3, 10, 2), atol=1e-3)  # white middle
    assert torch.allclose(out[:, 0, :, 0], -torch.ones(3, 10), atol=1e-3)  # no red/blue
    assert torch.allclose(out[:, 0, :, 9], -torch.ones(3, 10), atol=1e-3)


def test_center_crop_is_centred_tall() -> None:
    # 90 x 20 portrait to 10 x 10: only the middle 20 rows survive.
    img = np.zeros((2, 90, 20, 3), dtype=np.uint8)
    img[:, :35] = (0, 255, 0)
    img[:, 55:] = (0, 255, 0)
    img[:, 40:50] = 255
    out = center_crop_resize(img, 10, 10)
    assert out.shape == (3, 2, 10, 10)
    assert torch.allclose(out[:, :, 4:6], torch.ones(3, 2, 2, 10), atol=1e-3)
    assert torch.allclose(out[1, :, 0], -torch.ones(2, 10), atol=1e-3)  # green rows cut


def test_resize_range_and_round_trip() -> None:
    video = np.random.default_rng(0).integers(0, 256, (20, 16, 12, 3), dtype=np.uint8)
    out = center_crop_resize(video, 16, 12)
    assert out.shape == (3, 20, 16, 12)
    assert out.min() >= -1 and out.max() <= 1
    back = to_uint8_frames(out)
    assert back.dtype == np.uint8 and back.shape == video.shape
    assert np.abs(back.astype(int) - video.astype(int)).max() <= 1
    down = center_crop_resize(video, 8, 6)  # antialiased downscale stays in range
    assert down.min() >= -1 and down.max() <= 1


def test_to_uint8_clamps() -> None:
    video = torch.tensor([-3.0, -1.0, 0.0, 1.0, 5.0]).reshape(1, 5, 1, 1).expand(3, 5, 1, 1)
    out = to_uint8_frames(video.to(torch.bfloat16))
    # 0.0 -> 127.5, truncated to 127 as the release does (ENGINE-SPEC section 10).
    assert out[:, 0, 0, 0].tolist() == [0, 0, 127, 255, 255]


def test_read_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.mp4"
    with pytest.raises(MediaError, match="missing.mp4"):
        read_video(missing)
    with pytest.raises(MediaError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 50)
    with pytest.raises(MediaError, match="notes.mp4"):
        read_video(text)
    with pytest.raises(MediaError, match="notes.mp4"):
        video_info(text)
    with pytest.raises(MediaError, match="notes.mp4"):
        read_image(text)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match="empty.png"):
        read_image(empty)


def test_read_image_rgb(tmp_path: Path) -> None:
    import cv2

    bgr = np.zeros((5, 7, 3), dtype=np.uint8)
    bgr[..., 2] = 200  # red in OpenCV's BGR order
    path = tmp_path / "red.png"
    assert cv2.imwrite(str(path), bgr)
    img = read_image(path)
    assert img.shape == (5, 7, 3) and img.dtype == np.uint8
    assert img[0, 0].tolist() == [200, 0, 0]


def test_frames_round_trip(tmp_path: Path) -> None:
    frames = np.random.default_rng(1).integers(0, 256, (5, 6, 7, 3), dtype=np.uint8)
    path = tmp_path / "chunk_000.npy"
    save_frames(path, frames)
    assert np.array_equal(load_frames(path), frames)
    save_frames(tmp_path / "no_suffix", frames)  # numpy must not append another .npy
    assert np.array_equal(load_frames(tmp_path / "no_suffix"), frames)
    with pytest.raises(MediaError, match="uint8"):
        save_frames(path, frames.astype(np.float32))
    (tmp_path / "junk.npy").write_bytes(b"junk")
    with pytest.raises(MediaError, match="junk.npy"):
        load_frames(tmp_path / "junk.npy")
    with pytest.raises(MediaError, match="nothing.npy"):
        load_frames(tmp_path / "nothing.npy")
