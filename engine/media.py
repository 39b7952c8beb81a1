"""Reading, resizing and writing frames (ENGINE-SPEC section 2).

Frames on the numpy side are always uint8 RGB, F x H x W x 3. Model-side video
tensors are float32 3 x F x H x W in [-1, 1].
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from engine.atomic import atomic_write_with
from engine.errors import MediaError  # noqa: F401  (re-exported)
from engine.video_meta import video_info  # noqa: F401  (re-exported)

PathLike = str | os.PathLike[str]

# Frames resized at once: bounds the float32 intermediates (about 300 MB for 1080p sources).
_RESIZE_BATCH = 8


def read_video(path: PathLike) -> tuple[np.ndarray, float]:
    """Decode every frame of a video: (uint8 F x H x W x 3 RGB, fps)."""
    path = _existing(path, "video")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise MediaError(f"{path}: cannot open as a video; re-encode it as H.264 .mp4")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        frames = []
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not frames:
        raise MediaError(f"{path}: no decodable frames; check the file or re-encode it as .mp4")
    if fps <= 0:
        raise MediaError(f"{path}: the video has no frame rate; re-encode it with one set")
    return np.stack(frames), fps


def read_image(path: PathLike) -> np.ndarray:
    """Load an image as uint8 H x W x 3 RGB (alpha dropped, grey expanded)."""
    path = _existing(path, "image")
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise MediaError(f"{path}: not a readable image; save it as PNG or JPEG")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def frame_count(path: PathLike) -> int:
    return video_info(path)[0]


def center_crop_resize(frames: np.ndarray, height: int, width: int) -> torch.Tensor:
    """Center-crop to the target aspect ratio, resize, scale to [-1, 1] (the release's way).

    ``frames`` is uint8 F x H x W x 3 or one H x W x 3 image; returns float32
    3 x F x height x width (F = 1 for an image). The resize happens on the uint8
    frames and its result is rounded back to uint8 (``resize_uint8``); only then are
    the values mapped to [-1, 1] as ``x / 255 * 2 - 1`` (ENGINE-SPEC section 10).
    """
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise MediaError(f"expected frames of shape F x H x W x 3, got {frames.shape}")
    if height < 1 or width < 1:
        raise MediaError(f"target size {height}x{width}: height and width must be positive")
    frames = center_crop(frames, height, width)
    out = torch.empty((3, frames.shape[0], height, width), dtype=torch.float32)
    for lo in range(0, frames.shape[0], _RESIZE_BATCH):
        batch = torch.from_numpy(np.ascontiguousarray(frames[lo:lo + _RESIZE_BATCH]))
        resized = resize_uint8(batch.permute(0, 3, 1, 2), height, width)
        out[:, lo:lo + len(batch)] = to_unit_range(resized).permute(1, 0, 2, 3)
    return out


def resize_uint8(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize uint8 N x 3 x H x W frames as torchvision does a uint8 tensor.

    Bilinear, antialiased, ``align_corners=False``, computed in float32, then rounded
    half to even and cast back to uint8. The release resizes its uint8 inputs this
    way; resizing in float and skipping the rounding moves values by up to 0.5/127.5.
    """
    if tuple(frames.shape[-2:]) == (height, width):
        return frames
    resized = F.interpolate(frames.to(torch.float32), size=(height, width), mode="bilinear",
                            antialias=True, align_corners=False)
    # Antialiased bilinear weights are non-negative and sum to 1: no value leaves [0, 255].
    return torch.round(resized).to(torch.uint8)


def to_unit_range(frames: torch.Tensor) -> torch.Tensor:
    """uint8 values -> float32 in [-1, 1], as ``x / 255 * 2 - 1`` (the release's order)."""
    return frames.to(torch.float32) / 255 * 2 - 1


def center_crop(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """The largest centred crop of F x H x W x 3 frames with the target aspect ratio.

    The release asks torchvision's RandomResizedCrop for scale 1 and ratio width/height;
    that crop never fits unless the ratios agree, so torchvision falls back to this
    central crop. The arithmetic follows that fallback (``round(h * ratio)``, Python's
    half-to-even rounding, offsets floored) so crop sizes match it to the pixel.
    """
    src_h, src_w = frames.shape[1:3]
    ratio = width / height
    in_ratio = src_w / src_h
    if in_ratio > ratio:
        crop_h, crop_w = src_h, max(1, int(round(src_h * ratio)))
    elif in_ratio < ratio:
        crop_h, crop_w = max(1, int(round(src_w / ratio))), src_w
    else:
        crop_h, crop_w = src_h, src_w
    y0, x0 = (src_h - crop_h) // 2, (src_w - crop_w) // 2
    return frames[:, y0:y0 + crop_h, x0:x0 + crop_w]


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """3 x F x H x W in [-1, 1] -> uint8 F x H x W x 3, the release's way.

    ``(x + 1) * 127.5``, clipped to [0, 255], then truncated by the cast, not rounded
    (ENGINE-SPEC section 10): cond chunks read their neighbours' frames from these
    values, so rounding here would move every later chunk off the release's.
    """
    if video.ndim != 4 or video.shape[0] != 3:
        raise MediaError(
            f"expected a video tensor of shape 3 x F x H x W, got {tuple(video.shape)}")
    pixels = ((video.detach().to("cpu", torch.float32) + 1.0) * 127.5).clamp_(0, 255)
    return pixels.to(torch.uint8).permute(1, 2, 3, 0).contiguous().numpy()


def write_mp4(path: PathLike, frames: np.ndarray | Iterable[np.ndarray], fps: float) -> None:
    """Encode uint8 RGB frames (F x H x W x 3, or an iterable of H x W x 3) as H.264 .mp4.

    yuv420p needs even sizes, so an odd height or width is padded by one repeated
    edge row/column rather than rejected.
    """
    import imageio.v2 as imageio  # deferred: only writers need the ffmpeg plugin

    path = Path(path)
    if fps <= 0:
        raise MediaError(f"{path}: fps {fps} must be positive")

    def writer(tmp: Path) -> None:
        count = 0
        w = imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264",
                               pixelformat="yuv420p", quality=8, macro_block_size=1)
        with w:  # not `as w`: imageio's stub types __enter__ as the base, without append_data
            for frame in _even_frames(frames, path):
                w.append_data(frame)
                count += 1
        if count == 0:
            raise MediaError(f"{path}: no frames to write")

    try:
        atomic_write_with(path, writer, suffix=".mp4")
    except (OSError, RuntimeError) as exc:
        raise MediaError(f"{path}: could not write the video ({exc}); check the folder is "
                         f"writable and has free space") from exc


def _even_frames(frames: np.ndarray | Iterable[np.ndarray], path: Path) -> Iterator[np.ndarray]:
    for frame in frames:
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise MediaError(f"{path}: frames must be uint8 H x W x 3 RGB, got "
                             f"{frame.dtype} {frame.shape}")
        pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
        if pad_h or pad_w:
            frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        yield np.ascontiguousarray(frame)


def save_frames(path: PathLike, frames: np.ndarray) -> None:
    """Store uint8 F x H x W x 3 frames losslessly as .npy (chunk outputs for cond and merge)."""
    path = Path(path)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise MediaError(f"{path}: frames must be uint8 F x H x W x 3, got "
                         f"{frames.dtype} {frames.shape}")

    def writer(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object stops numpy appending another .npy
            np.save(f, np.ascontiguousarray(frames), allow_pickle=False)

    atomic_write_with(path, writer, suffix=".npy")


def load_frames(path: PathLike) -> np.ndarray:
    path = _existing(path, "frames")
    try:
        frames = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise MediaError(f"{path}: not a readable .npy frame file ({exc}); delete it so the "
                         f"chunk is generated again") from exc
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise MediaError(f"{path}: expected uint8 F x H x W x 3 frames, got {frames.dtype} "
                         f"{frames.shape}; delete it so the chunk is generated again")
    return frames


def _existing(path: PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: {what} file not found; check the path")
    return path
