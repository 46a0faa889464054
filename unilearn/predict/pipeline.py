"""One input of `unilearn predict`, from media to test clips, exactly as a stored clip becomes
test clips in `unilearn evaluate`:

1. decode (lazily, `MediaFrames`) and find the face with the preprocessing stage's own functions
   (`unilearn.data.face_clip.locate_face` / `cut_face_clip`, the model's store settings);
2. keep the stored pixels (face crop or resize to the store's short side, then the store's JPEG
   round trip at its quality) of only the frames the test clips and timeline windows use;
3. sample test clips with `eval_indices` (n clips uniformly spaced, every `frame_stride`-th frame;
   an image or a one-frame clip is the frame repeated as one tubelet) and resize + centre crop
   them with `EvalClipTransform`.

`--crop`: `detect` crops the tracked face; `none` only resizes (material distributed face-cropped,
as preprocess does for DFEW/FERV39K/MAFW); `auto` detects and crops, unless the face already
fills the frame (median crop box side >= `AUTO_FACE_FILL` x the frame's short side), in which
case the input is taken as a face crop and only resized. `prepare_input` never raises: a failure
is a row with a reason.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from unilearn.data.clip_dataset import IMAGE_FRAMES
from unilearn.data.decode import MediaError, decode_image_bytes
from unilearn.data.face import FaceDetector, NoFaceError, probe_frames
from unilearn.data.face_clip import (
    PreprocessSettings,
    cut_face_clip,
    detector_options,
    fill_missing,
    locate_face,
    row_framing,
)
from unilearn.data.frame_sampling import eval_indices
from unilearn.data.transforms import EvalClipTransform
from unilearn.predict.inputs import InputItem
from unilearn.predict.media import MediaFrames
from unilearn.predict.model import InferenceModel
from unilearn.predict.timeline import (
    Window,
    WindowStride,
    step_frames,
    timeline_windows,
)

AUTO_FACE_FILL = 0.8  # DFEW-style crops measure 0.9-1.1, faces in scenes well below


@dataclass(frozen=True)
class PredictOptions:
    """Per-input knobs of `unilearn predict` (its command line holds their defaults)."""

    n_clips: int
    crop: str
    timeline: bool
    window_stride: WindowStride | None
    fps: float | None  # frame rate of frame folders (videos know theirs)


@dataclass
class Prepared:
    """An input ready for the model, or why it is not (`reason`)."""

    index: int
    item: InputItem
    head: str = ""
    reason: str = ""
    reason_code: str = ""
    notes: list[str] = field(default_factory=list)
    n_frames: int = 0
    fps: float | None = None
    face_detections: int = 0
    crop: str = ""  # "face" (cropped to the tracked face) or "resize"
    frames: np.ndarray | None = None  # stored pixels of the kept frames [K, h, w, 3]
    position: dict[int, int] = field(default_factory=dict)  # frame index -> row of `frames`
    clips: list[tuple[int, ...]] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    decode_s: float = 0.0
    face_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.reason


_LOCAL = threading.local()


def thread_detector(backend: str, framing: str = "tracked") -> FaceDetector:
    """One detector per thread, backend and framing (`detector_options`): cv2.dnn networks must
    not be shared across threads."""
    cache = getattr(_LOCAL, "detectors", None)
    if cache is None:
        cache = _LOCAL.detectors = {}
    options = detector_options(framing)
    key = (backend, bool(options))
    if key not in cache:
        cache[key] = FaceDetector("mtcnn" if options else backend, **options)
    return cache[key]


def choose_head(kind: str, spec: InferenceModel) -> tuple[str, str]:
    """(head, note): SFER for images when the model has an SFER head, DFER otherwise."""
    if kind == "image" and spec.has_head("sfer"):
        return "sfer", ""
    if spec.has_head("dfer"):
        note = "image scored with the DFER head (the model has no SFER head)"
        return "dfer", note if kind == "image" else ""
    return "sfer", "video scored with the SFER head (the model has no DFER head)"


def jpeg_round_trip(frames: np.ndarray, quality: int) -> np.ndarray:
    """The pixels a clip has after the store: each frame JPEG-encoded as `store.encode_clip` does
    (OpenCV, BGR, this quality) and decoded as `ClipStore.read_numpy` does."""
    out = np.empty_like(frames)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    for i, frame in enumerate(frames):
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(frame[..., ::-1]), params)
        decoded = decode_image_bytes(buf) if ok else None
        if decoded is None or decoded.shape != frame.shape:
            raise ValueError(f"JPEG round trip failed for a {frame.shape[:2]} frame")
        out[i] = decoded
    return out


def face_fill(boxes: np.ndarray, frame_shape: tuple[int, int]) -> float:
    """Median crop-box side over the frame's short side (about 1 for a face-cropped clip)."""
    return float(np.median(boxes[:, 2] - boxes[:, 0]) / max(min(frame_shape), 1))


def prepare_input(
    index: int, item: InputItem, spec: InferenceModel, options: PredictOptions
) -> Prepared:
    """Decode, find the face, keep the frames the clips use, sample the clips. Never raises."""
    out = Prepared(index, item)
    if item.reason:
        out.reason, out.reason_code = item.reason, item.reason_code
        return out
    start = time.perf_counter()
    source = None
    try:
        source = MediaFrames(item.path, item.kind)
        _prepare(out, source, spec, options)
    except NoFaceError as exc:
        hint = "" if options.crop == "none" else " (if it is already a face crop, use --crop none)"
        out.reason, out.reason_code = f"no face: {item.path}: {exc}{hint}", "no_face"
    except MediaError as exc:
        out.reason, out.reason_code = f"unreadable media: {exc}", "unreadable_media"
    except MemoryError:
        out.reason, out.reason_code = f"out of memory: {item.path}", "out_of_memory"
    except Exception as exc:  # noqa: BLE001 - one bad input never stops the run
        out.reason, out.reason_code = f"{type(exc).__name__}: {item.path}: {exc}", "error"
    if out.reason:
        out.frames = None
    out.decode_s = source.decode_seconds if source is not None else time.perf_counter() - start
    out.face_s = max(time.perf_counter() - start - out.decode_s, 0.0)
    return out


def _prepare(
    out: Prepared, source: MediaFrames, spec: InferenceModel, options: PredictOptions
) -> None:
    settings: PreprocessSettings = spec.settings
    n = len(source)
    out.n_frames, out.fps = n, source.fps or (options.fps if out.item.kind == "frames" else None)
    out.head, note = choose_head(out.item.kind, spec)
    if note:
        out.notes.append(note)
    if n == 1:  # an image: one clip, the frame repeated as one tubelet (as evaluate does)
        out.clips = [(0,) * IMAGE_FRAMES]
    else:
        clips = eval_indices(n, spec.num_frames, spec.frame_stride, options.n_clips)
        out.clips = [tuple(c) for c in clips]
        if options.timeline:
            step = step_frames(options.window_stride, spec.num_frames, spec.frame_stride, out.fps)
            out.windows = timeline_windows(n, spec.num_frames, spec.frame_stride, step)
    keep = sorted({i for c in out.clips for i in c} | {i for w in out.windows for i in w.frames})

    boxes = None
    if options.crop != "none":
        # the model's store framing: the authors' MTCNN crop (MAFW) detects every frame it keeps
        per_frame = row_framing(settings.framing, detect=True) == "authors_mtcnn"
        source.plan(keep if per_frame else probe_frames(n, settings.face))
        detector = thread_detector(settings.detector, row_framing(settings.framing, detect=True))
        boxes, out.face_detections = locate_face(
            source, settings, detect=True, detector=detector, only=keep if per_frame else None
        )
        if per_frame:
            boxes = fill_missing(boxes)  # a frame with no face takes its neighbour's crop
            if out.face_detections < len(keep):
                out.notes.append(
                    f"no face in {len(keep) - out.face_detections} of {len(keep)} frames: "
                    "cropped as the nearest frame with one"
                )
        fill = face_fill(boxes, source.shape())
        if options.crop == "auto" and fill >= AUTO_FACE_FILL:
            boxes = None
            out.notes.append(f"face fills the frame ({fill:.2f}): taken as a face crop, resized")
    out.crop = "resize" if boxes is None else "face"
    pixels = cut_face_clip(source, boxes, settings, keep, chunk=source.chunk)
    if settings.codec != "jpeg":  # its groups code neighbouring frames together: not the kept ones
        out.notes.append(f"the model's store kept {settings.codec} frames: no store round trip")
    elif settings.jpeg_quality:
        pixels = jpeg_round_trip(pixels, settings.jpeg_quality)
    out.frames = pixels
    out.position = {i: k for k, i in enumerate(keep)}


def clip_tensor(prepared: Prepared, frames: tuple[int, ...], input_size: int) -> torch.Tensor:
    """uint8 `[C, T, S, S]` of the given frame indices (resize + centre crop, as evaluate)."""
    rows = [prepared.position[i] for i in frames]
    return EvalClipTransform(input_size)(prepared.frames[rows])


def iter_clips(prepared: Prepared, input_size: int) -> Iterator[tuple[str, int, torch.Tensor]]:
    """("clip", k, tensor) for the test clips, then ("window", w, tensor) for timeline windows."""
    for k, frames in enumerate(prepared.clips):
        yield "clip", k, clip_tensor(prepared, frames, input_size)
    for w, window in enumerate(prepared.windows):
        yield "window", w, clip_tensor(prepared, window.frames, input_size)
