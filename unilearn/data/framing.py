"""The framings of stored frames besides the tracked box (`unilearn.data.face`): the authors'
VoxCeleb2 region, the authors' per-frame MTCNN crop of MAFW and the 5-landmark alignment of
AffectNet (`unilearn.catalogue.FRAMINGS` names them; `unilearn.data.face_clip` picks one per row).

- `region_box`: the fixed region the authors' video dataset cuts out of every VoxCeleb2 frame
  (rows 0-160, columns 32-192 of 224x224). A frame of another size gets the region scaled
  proportionally on each axis (e.g. 0-69 x 14-83 of a 96x96 frame), so a resized copy of
  VoxCeleb2 is framed the same way.
- `authors_mtcnn_params` / `authors_mtcnn_crop`: their `finetune/process/mtcnn.py`: the most
  confident MTCNN face of the frame, cropped to its box (clipped at the frame's edges, as a numpy
  slice is), rotated about the crop's centre by the eye line's angle (black corners, bilinear) and
  resized to a square without keeping the aspect ratio (bilinear).
- `similarity_to_template` / `warp_to_template`: a similarity transform (rotation, uniform scale,
  translation; OpenCV's least-squares fit) from the 5 MTCNN landmarks onto
  `catalogue.FACE_TEMPLATE_5` scaled to the output side, then one bilinear warp (black outside).
"""

from __future__ import annotations

import cv2
import numpy as np

from unilearn.catalogue import FACE_TEMPLATE_5, VOXCELEB2_FRAME, VOXCELEB2_REGION
from unilearn.data.face import Face


def region_box(height: int, width: int) -> tuple[int, int, int, int]:
    """The authors' VoxCeleb2 region of an `height` x `width` frame as (row0, row1, col0, col1):
    rows 0-160, columns 32-192 at 224x224, scaled proportionally on each axis otherwise."""
    (r0, r1), (c0, c1) = VOXCELEB2_REGION
    ky, kx = height / VOXCELEB2_FRAME, width / VOXCELEB2_FRAME
    top, left = round(r0 * ky), round(c0 * kx)
    return top, top + round((r1 - r0) * ky), left, left + round((c1 - c0) * kx)


def authors_mtcnn_params(frame_shape: tuple[int, ...], faces: list[Face]) -> np.ndarray:
    """`[x0, y0, x1, y1, angle_degrees]` of the authors' crop: the most confident face's integer
    box clipped to the frame, and the eye line's angle `atan(dy / dx)`; NaNs when `faces` is
    empty or has no landmarks (the authors write no frame then)."""
    faces = [f for f in faces if f.landmarks is not None]
    if not faces:
        return np.full(5, np.nan, np.float32)
    best = max(faces, key=lambda f: f.score)
    h, w = frame_shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in best.box)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    (lx, ly), (rx, ry) = best.landmarks[0], best.landmarks[1]
    dx, dy = float(rx - lx), float(ry - ly)
    angle = np.degrees(np.arctan(dy / dx)) if dx else 90.0 * np.sign(dy)
    return np.array([x0, y0, x1, y1, angle], np.float32)


def authors_mtcnn_crop(frame: np.ndarray, params: np.ndarray, size: int) -> np.ndarray:
    """One frame as the authors' `crop_and_align`, resized to `size` x `size` (theirs: 224)."""
    x0, y0, x1, y1 = (int(v) for v in params[:4])
    cropped = np.ascontiguousarray(frame[y0:y1, x0:x1])
    if cropped.shape[0] < 1 or cropped.shape[1] < 1:
        raise ValueError(f"face box {params[:4].tolist()} is empty in a {frame.shape} frame")
    h, w = cropped.shape[:2]
    rotation = cv2.getRotationMatrix2D((w / 2, h / 2), float(params[4]), 1)
    aligned = cv2.warpAffine(cropped, rotation, (w, h))
    return cv2.resize(aligned, (size, size))


def similarity_to_template(landmarks: np.ndarray, size: int) -> np.ndarray:
    """The `[2, 3]` similarity matrix that maps 5 landmarks `[5, 2]` onto the canonical template
    of a `size` x `size` image (least squares over all five points)."""
    template = np.asarray(FACE_TEMPLATE_5, np.float64) * size
    matrix, _ = cv2.estimateAffinePartial2D(
        np.asarray(landmarks, np.float64).reshape(5, 2),
        template,
        method=cv2.RANSAC,
        ransacReprojThreshold=1e6,  # every point an inlier: the refinement is plain least squares
        refineIters=100,
    )
    if matrix is None:
        raise ValueError(f"no similarity transform fits the landmarks {landmarks.tolist()}")
    return matrix


def warp_to_template(frame: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """`frame` warped by `matrix` into a `size` x `size` image (bilinear, black outside)."""
    return cv2.warpAffine(
        np.ascontiguousarray(frame), matrix, (size, size), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0),
    )  # fmt: skip
