"""Reading media into RGB uint8 frames: videos (decord first, PyAV as fallback), frame folders
(JPEG via torchvision's libjpeg-turbo decoder, anything else via PIL) and single images.

Every reader returns a numpy array `[T, H, W, 3]` (RGB, uint8) and raises `MediaError` naming the
file and the problem, so callers (preprocess, predict, doctor) can quarantine a clip with a reason.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")


class MediaError(RuntimeError):
    """A media file or folder could not be read; the message names it and says why."""


def _natural_key(path: Path) -> list:
    # frame_2.jpg before frame_10.jpg: DFEW/MAFW/FERV39K name frames with unpadded counters.
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", path.name)]


def list_frames(folder: str | os.PathLike) -> list[Path]:
    """The image files of a frame folder in temporal (natural) order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MediaError(f"{folder}: frame folder does not exist")
    files = [p for p in folder.iterdir() if p.suffix.lower() in FRAME_EXTENSIONS and p.is_file()]
    return sorted(files, key=_natural_key)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """One image file -> `[H, W, 3]` RGB uint8 (OpenCV's libjpeg-turbo/libpng; PIL as fallback)."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise MediaError(f"{path}: image file does not exist") from None
    decoded = decode_image_bytes(data)
    if decoded is not None:
        return decoded
    from PIL import Image, UnidentifiedImageError

    try:  # CMYK JPEGs, 16-bit PNGs, ...: PIL reads what OpenCV's fast path refuses
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise MediaError(f"{path}: not a readable image ({exc})") from None


def decode_image_bytes(data: np.ndarray | bytes) -> np.ndarray | None:
    """Encoded image bytes -> `[H, W, 3]` RGB uint8, or None if OpenCV cannot decode them.

    OpenCV is the fastest decoder here (0.25 ms for a 176x176 JPEG vs 0.36 ms torchvision,
    0.50 ms PIL), and torchvision's image codecs are deprecated since 0.29.
    """
    buf = (
        np.frombuffer(data, np.uint8) if isinstance(data, bytes | bytearray | memoryview) else data
    )
    if buf.size == 0:
        return None
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB)
    return img


def read_frames(folder: str | os.PathLike, indices: Sequence[int] | None = None) -> np.ndarray:
    """A frame folder -> `[T, H, W, 3]`; `indices` select frames (default: all, in order)."""
    files = list_frames(folder)
    if not files:
        raise MediaError(
            f"{folder}: frame folder has no image files ({', '.join(FRAME_EXTENSIONS)})"
        )
    picked = files if indices is None else [files[i] for i in indices]
    frames = [read_image(f) for f in picked]
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise MediaError(f"{folder}: frames differ in size {sorted(shapes)}")
    return np.stack(frames)


def _decord_reader(path: str | os.PathLike):
    import decord

    return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)


def read_video(path: str | os.PathLike, indices: Sequence[int] | None = None) -> np.ndarray:
    """A video file -> `[T, H, W, 3]`; decord first, PyAV when decord fails or is missing."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: video file does not exist")
    errors = []
    try:
        vr = _decord_reader(path)
        n = len(vr)
        if n == 0:
            raise MediaError("decord found no frames")
        wanted = list(range(n)) if indices is None else list(indices)
        frames = vr.get_batch(wanted).asnumpy()
        if len(frames) == len(wanted):
            return frames
        errors.append(f"decord returned {len(frames)} of {len(wanted)} frames")
    except Exception as exc:  # noqa: BLE001 - decord raises its own untyped errors
        errors.append(f"decord: {exc}".splitlines()[0])
    try:
        frames = _read_video_av(path, indices)
    except Exception as exc:  # noqa: BLE001
        errors.append(f"PyAV: {exc}".splitlines()[0])
        raise MediaError(f"{path}: unreadable video ({'; '.join(errors)})") from None
    if len(frames) == 0:
        raise MediaError(f"{path}: video has no decodable frames ({'; '.join(errors)})")
    return frames


def _read_video_av(path: str | os.PathLike, indices: Sequence[int] | None) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    if indices is not None:
        if frames and max(indices) >= len(frames):
            raise MediaError(f"{path}: frame {max(indices)} requested, video has {len(frames)}")
        frames = [frames[i] for i in indices]
    return np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)


def read_media(path: str | os.PathLike, media: str | None = None) -> np.ndarray:
    """Any clip as `[T, H, W, 3]`: `media` is `frames`, `video` or `image` (guessed when None)."""
    path = Path(path)
    if media is None:
        media = guess_media(path)
    if media == "frames":
        return read_frames(path)
    if media == "video":
        return read_video(path)
    if media == "image":
        return read_image(path)[None]
    raise MediaError(f"{path}: unknown media kind {media!r} (expected frames, video or image)")


def guess_media(path: str | os.PathLike) -> str:
    """`frames` for a folder, `video` or `image` by file extension."""
    path = Path(path)
    if path.is_dir():
        return "frames"
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    if suffix in FRAME_EXTENSIONS:
        return "image"
    raise MediaError(f"{path}: cannot tell whether this is a video, an image or a frame folder")
