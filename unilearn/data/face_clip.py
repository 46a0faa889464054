"""Raw frames -> the store's face clip: the one path of `unilearn preprocess` and `unilearn
predict`, so a model sees the same pixels at prediction time as in training.

`PreprocessSettings` are everything that changes the stored pixels (a store keeps the settings it
was built with, a checkpoint the settings of its store). `locate_face` says where a clip's face is
(an annotated box, detection + tracking, or nowhere: the clip is distributed face-cropped and only
resized); `cut_face_clip` crops and resizes the frames to the stored size.

`framing` (`unilearn.catalogue.FRAMINGS`) chooses how each kind of row is framed: rows only
resized (`whole_frame`, or VoxCeleb2's `authors_region`), detected rows (`tracked`, or MAFW's
`authors_mtcnn`: one detection per frame, NaN rows where MTCNN finds no face) and rows with an
annotated box (`box`, or AffectNet's `aligned_5point`); `default` is ours on every row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields

import numpy as np

from unilearn.catalogue import DATASETS, FRAMING_DEFAULT_OF_ROWS, FRAMING_ROWS, FRAMINGS
from unilearn.data.face import (
    FaceCropConfig,
    FaceDetector,
    NoFaceError,
    crop_frames,
    face_boxes,
    resize_short_side,
    square_boxes,
)
from unilearn.data.framing import (
    authors_mtcnn_crop,
    authors_mtcnn_params,
    region_box,
    similarity_to_template,
    warp_to_template,
)

STORE_VERSION = 1


@dataclass(frozen=True)
class PreprocessSettings:
    """Everything that changes the stored pixels; a store keeps the settings it was built with.

    The four a config sets (`data.store`: short side, frame stride, framing, codec) are required;
    the rest are preprocessing's own (`unilearn preprocess` flags, no config key), defaulted here."""

    short_side: int
    frame_stride: int  # keep every k-th source frame (a store only pre-training reads)
    # how rows are framed (catalogue.FRAMINGS); `default` = ours on every row; `auto` = the
    # dataset's authors' framing, resolved by `resolve_framing` before a store records it
    framing: str
    codec: str  # how frames are stored: "jpeg" (each frame alone) or "h264" (groups of frames)
    jpeg_quality: int = 90
    detect: str = "auto"  # auto | always | never
    detector: str = "auto"  # auto | mtcnn | haar
    face: FaceCropConfig = field(default_factory=FaceCropConfig)
    version: int = STORE_VERSION


# What a store or checkpoint made before a setting existed holds: every frame, framed ours, JPEG.
SETTINGS_BEFORE_KEYS = {"frame_stride": 1, "framing": "default", "codec": "jpeg"}


def recorded_settings(record: dict) -> dict:
    """A settings record (a store's settings.json, a checkpoint's meta) as JSON, with each key it
    lacks filled in: one added later, with the value stores held before it (`SETTINGS_BEFORE_KEYS`)
    or its default (the same pixels)."""
    defaults: dict = {"face": asdict(FaceCropConfig())}
    for f in fields(PreprocessSettings):
        if f.default is not MISSING:
            defaults[f.name] = f.default
    return json.loads(json.dumps({**defaults, **SETTINGS_BEFORE_KEYS, **record}))


def resolve_framing(framing: str, dataset: str) -> str:
    """The framing a store of `dataset` records: `auto` -> the authors' framing of the dataset
    (`default` for a dataset they frame like ours); any other value must be one of the dataset's."""
    table = DATASETS[dataset].store_table if dataset in DATASETS else dataset  # affectnet7
    allowed = FRAMINGS.get(table, ())
    if framing == "auto":
        return allowed[0] if allowed else "default"
    if framing != "default" and framing not in allowed:
        raise ValueError(
            f"framing {framing!r} does not apply to {dataset}: expected one of "
            f"{['auto', 'default', *allowed]}"
        )
    return framing


def row_framing(framing: str, *, detect: bool, box: object = None) -> str:
    """The framing of one row: `framing` where it applies to the row's kind (annotated box,
    detected, only resized), else that kind's ours."""
    kind = "box" if box is not None else "detect" if detect else "frame"
    return framing if FRAMING_ROWS.get(framing) == kind else FRAMING_DEFAULT_OF_ROWS[kind]


def detector_options(framing: str) -> dict:
    """`FaceDetector` options of a framing: the authors' MTCNN crops keep any face MTCNN returns
    (its own stage thresholds, no 0.9 score cut) on the full-size frame, as theirs does."""
    if framing in ("authors_mtcnn", "aligned_5point"):
        return {"min_score": 0.0, "max_side": 1 << 16}
    return {}


_DETECTORS: dict[tuple[str, str], FaceDetector] = {}


def detector_for(backend: str, framing: str = "tracked") -> FaceDetector:
    """This process's detector for `backend` and a row framing, built once (not thread-safe:
    one per thread)."""
    options = detector_options(framing)
    key = (backend, "landmarks" if options else "")
    if key not in _DETECTORS:
        if options and backend == "haar":
            raise ValueError(
                f"framing {framing!r} needs MTCNN's landmarks; --detector haar has none"
            )
        _DETECTORS[key] = FaceDetector("mtcnn" if options else backend, **options)
    return _DETECTORS[key]


def locate_face(
    frames,
    settings: PreprocessSettings,
    *,
    detect: bool,
    box: tuple[float, float, float, float] | None = None,
    detector: FaceDetector | None = None,
    only: Sequence[int] | None = None,
) -> tuple[np.ndarray | None, int]:
    """Where a clip's face clip comes from, by the row's framing (`row_framing`):
    `tracked` / `box`: `(square crop box per frame [T, 4], detections)`; `authors_mtcnn`:
    `([T, 5] x0, y0, x1, y1, eye-line angle per frame, NaN where no face; faces found)`;
    `aligned_5point`: `([T, 2, 3] similarity warps, 1)`, or the annotation box `[T, 4]` and 0
    when MTCNN finds no face inside the box; `(None, 0)` when the clip is only resized. An
    annotated `box` (AffectNet) wins over `detect`. `frames` is `[T, H, W, 3]` or any sequence
    with `len()`, `frames[t]` and `frames[list]` (predict's lazily decoded media): tracking reads
    only the probe frames, `authors_mtcnn` the frames `only` (default all). Raises `NoFaceError`
    when detecting finds no face."""
    framing = row_framing(settings.framing, detect=detect, box=box)
    if framing == "aligned_5point":
        warp = _aligned_warp(frames[0], box, settings, detector)
        if warp is not None:
            return np.repeat(warp[None], len(frames), axis=0), 1
    if box is not None:
        return np.repeat(square_boxes(np.asarray(box, np.float32), 1.0), len(frames), axis=0), 0
    if framing == "authors_mtcnn":
        detector = detector or detector_for(settings.detector, framing)
        params = np.full((len(frames), 5), np.nan, np.float32)
        for t in range(len(frames)) if only is None else only:
            frame = frames[t]
            params[t] = authors_mtcnn_params(frame.shape, detector.detect(frame))
        found = int(np.isfinite(params[:, 0]).sum())
        if not found:
            raise NoFaceError(f"MTCNN found no face in any of {len(frames)} frames")
        return params, found
    if not detect:
        return None, 0
    return face_boxes(frames, detector or detector_for(settings.detector), settings.face)


def _aligned_warp(frame, box, settings: PreprocessSettings, detector) -> np.ndarray | None:
    """The similarity warp of the most confident MTCNN face inside the annotation `box` (the
    box's integer crop, clipped to the image), or None when MTCNN finds none there."""
    h, w = frame.shape[:2]
    x0, y0 = max(int(round(box[0])), 0), max(int(round(box[1])), 0)
    x1, y1 = min(int(round(box[2])), w), min(int(round(box[3])), h)
    if x1 <= x0 or y1 <= y0:
        return None
    detector = detector or detector_for(settings.detector, "aligned_5point")
    faces = [
        f
        for f in detector.detect(np.ascontiguousarray(frame[y0:y1, x0:x1]))
        if f.landmarks is not None
    ]
    if not faces:
        return None
    landmarks = max(faces, key=lambda f: f.score).landmarks + np.array([x0, y0], np.float32)
    return similarity_to_template(landmarks, settings.short_side)


def fill_missing(params: np.ndarray) -> np.ndarray:
    """`authors_mtcnn` rows with no face take the nearest frame's box and angle (predict keeps
    every frame a clip needs; preprocess instead leaves such frames out, as the authors do)."""
    found = np.flatnonzero(np.isfinite(params[:, 0]))
    if len(found) in (0, len(params)):
        return params
    nearest = found[np.abs(np.arange(len(params))[:, None] - found[None]).argmin(axis=1)]
    return params[nearest]


def cut_face_clip(
    frames,
    boxes: np.ndarray | None,
    settings: PreprocessSettings,
    keep: Sequence[int] | None = None,
    chunk: int = 64,
) -> np.ndarray:
    """The stored pixels of frames `keep` (default all), `short_side` squared, framed as
    `locate_face` located them: square boxes `[T, 4]` cropped; the authors' MTCNN crops `[T, 5]`
    (rows with no face must be left out of `keep` or filled); similarity warps `[T, 2, 3]`. With
    no boxes the frames are resized to short side `short_side`; under `authors_region` the
    region is cut first and then resized to `short_side` only if larger (never enlarged: 160 px
    of a 224 frame stay 160 px, and the loader scales the short side itself). Works `chunk`
    frames at a time, so a long lazily decoded video is never held at full resolution."""
    keep = list(range(len(frames))) if keep is None else [int(i) for i in keep]
    if not keep:
        raise ValueError("cut_face_clip: no frames to keep")
    size = settings.short_side
    parts = []
    for start in range(0, len(keep), chunk):
        part = keep[start : start + chunk]
        pixels = frames[part]
        if boxes is None and settings.framing == "authors_region":
            r0, r1, c0, c1 = region_box(*pixels.shape[1:3])
            region = pixels[:, r0:r1, c0:c1]
            parts.append(resize_short_side(region, min(size, *region.shape[1:3])))
        elif boxes is None:
            parts.append(resize_short_side(pixels, size))
        elif boxes.ndim == 3:
            parts.append(
                np.stack([warp_to_template(f, boxes[i], size) for f, i in zip(pixels, part)])
            )
        elif boxes.shape[1] == 5:
            parts.append(
                np.stack([authors_mtcnn_crop(f, boxes[i], size) for f, i in zip(pixels, part)])
            )
        else:
            parts.append(crop_frames(pixels, boxes[part], size))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
