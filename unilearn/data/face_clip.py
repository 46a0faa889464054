"""Raw frames -> the store's face clip: the one path of `unilearn preprocess` and `unilearn
predict`, so a model sees the same pixels at prediction time as in training.

`PreprocessSettings` are everything that changes the stored pixels (a store keeps the settings it
was built with, a checkpoint the settings of its store). `locate_face` says where a clip's face is
(an annotated box, detection + tracking, or nowhere: the clip is distributed face-cropped and only
resized); `cut_face_clip` crops and resizes the frames to the stored size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from unilearn.data.face import (
    FaceCropConfig,
    FaceDetector,
    crop_frames,
    face_boxes,
    resize_short_side,
    square_boxes,
)

STORE_VERSION = 1


@dataclass(frozen=True)
class PreprocessSettings:
    """Everything that changes the stored pixels; a store keeps the settings it was built with."""

    short_side: int = 176
    jpeg_quality: int = 90
    detect: str = "auto"  # auto | always | never
    detector: str = "auto"  # auto | mtcnn | haar
    face: FaceCropConfig = field(default_factory=FaceCropConfig)
    version: int = STORE_VERSION
    frame_stride: int = 1  # keep every k-th source frame (a store only pre-training reads)


_DETECTORS: dict[str, FaceDetector] = {}


def detector_for(backend: str) -> FaceDetector:
    """This process's detector for `backend`, built once (not thread-safe: one per thread)."""
    if backend not in _DETECTORS:
        _DETECTORS[backend] = FaceDetector(backend)
    return _DETECTORS[backend]


def locate_face(
    frames,
    settings: PreprocessSettings,
    *,
    detect: bool,
    box: tuple[float, float, float, float] | None = None,
    detector: FaceDetector | None = None,
) -> tuple[np.ndarray | None, int]:
    """Where a clip's face clip comes from: `(square crop box per frame [T, 4], detections)`, or
    `(None, 0)` when the clip is only resized (distributed face-cropped). An annotated `box`
    (AffectNet) wins over `detect`. `frames` is `[T, H, W, 3]` or any sequence with `len()`,
    `frames[t]` and `frames[list]` (predict's lazily decoded media): detection reads only the
    probe frames. Raises `NoFaceError` when detecting finds no face."""
    if box is not None:
        return np.repeat(square_boxes(np.asarray(box, np.float32), 1.0), len(frames), axis=0), 0
    if not detect:
        return None, 0
    return face_boxes(frames, detector or detector_for(settings.detector), settings.face)


def cut_face_clip(
    frames,
    boxes: np.ndarray | None,
    settings: PreprocessSettings,
    keep: Sequence[int] | None = None,
    chunk: int = 64,
) -> np.ndarray:
    """The stored pixels of frames `keep` (default all): each cropped to its box and resized to
    `short_side` squared, or (no boxes) resized to short side `short_side`. Works `chunk` frames at
    a time, so a long lazily decoded video is never held at full resolution."""
    keep = list(range(len(frames))) if keep is None else [int(i) for i in keep]
    if not keep:
        raise ValueError("cut_face_clip: no frames to keep")
    size = settings.short_side
    parts = []
    for start in range(0, len(keep), chunk):
        part = keep[start : start + chunk]
        pixels = frames[part]
        if boxes is None:
            parts.append(resize_short_side(pixels, size))
        else:
            parts.append(crop_frames(pixels, boxes[part], size))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
