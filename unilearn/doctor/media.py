"""The media on a sample of clips: readable or not, frames per clip (which DFEW variant), frame
size, and whether one large face fills the frame (the preprocessing detector on a few frames)."""

from __future__ import annotations

import random
import statistics
from collections import Counter
from dataclasses import dataclass, field

import cv2
import numpy as np
from tqdm import tqdm

from unilearn.catalogue import DATASETS, FACE_CROPPED_DATASETS
from unilearn.data.decode import MediaError, list_frames, read_image, read_video
from unilearn.data.native import NativeRead
from unilearn.data.native.dfew import TIME_NORMALISED_DIR
from unilearn.doctor import ERROR, OK, WARNING, Finding

# A face crop (box scaled ~1.3x around the face) puts a detector box of roughly 35-60% of the
# frame; a face in a full scene is a few percent. Between: warn.
LARGE_FACE = 0.15
SMALL_FACE = 0.06
# Video datasets distributed as face crops (VoxCeleb2 face-tracked; not MAFW, whose frames
# preprocess crops); AffectNet's images come with a face box instead.
FACE_CROPPED = frozenset(d for d in FACE_CROPPED_DATASETS if DATASETS[d].media == "video")
VARIANT_DIR_16F = TIME_NORMALISED_DIR.rsplit("/", 1)[-1]


@dataclass
class MediaSample:
    """What the sample showed; `face_fraction` per checked frame (0 when no face was found)."""

    clips: int = 0
    sizes: Counter = field(default_factory=Counter)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    face_fraction: list[float] = field(default_factory=list)


def sample_rows(rows: list[dict], n: int, seed: int = 0) -> list[dict]:
    """`n` distinct clips (0 = all), the same ones on every run."""
    unique = list({r["path"]: r for r in rows}.values())
    if n <= 0 or n >= len(unique):
        return unique
    return random.Random(seed).sample(unique, n)


def _positions(n_frames: int, k: int) -> list[int]:
    if n_frames <= 0:
        return [0]
    return sorted({int(round(x)) for x in np.linspace(0, n_frames - 1, k)})


def read_sample_frames(r: dict, k: int = 3) -> list[np.ndarray]:
    """`k` frames spread over the clip (RGB uint8); raises MediaError when unreadable."""
    if r["media"] == "image":
        return [read_image(r["path"])]
    if r["media"] == "frames":
        files = list_frames(r["path"])
        if not files:
            raise MediaError(f"{r['path']}: frame folder has no image files")
        return [read_image(files[i]) for i in _positions(len(files), k)]
    n = int(r["n_frames"])
    frames = read_video(r["path"], _positions(n, k) if n > 0 else None)
    return list(frames[:: max(1, len(frames) // k)][:k]) if n <= 0 else list(frames)


def largest_face_fraction(detector, rgb: np.ndarray) -> float:
    """Area of the largest detected face / frame area. The frame is padded first: detectors miss
    faces that touch the border, which is exactly what a tight face crop looks like."""
    h, w = rgb.shape[:2]
    pad = int(0.3 * max(h, w))
    padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(127, 127, 127))
    if max(padded.shape[:2]) < 160:  # detectors need a few dozen pixels per face
        padded = cv2.resize(padded, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_LINEAR)
        scale = 2.0
    else:
        scale = 1.0
    best = 0.0
    for face in detector.detect(padded):
        x0, y0, x1, y1 = (v / scale - pad for v in face.box)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        best = max(best, max(x1 - x0, 0) * max(y1 - y0, 0) / (h * w))
    return best


def inspect(
    result: NativeRead,
    sample: int,
    *,
    detector: str = "auto",
    face_clips: int = 12,
    seed: int = 0,
    progress: bool = True,
) -> MediaSample:
    """Read `sample` clips (0 = all); run the face detector on the first `face_clips` of them."""
    out = MediaSample()
    rows = sample_rows(result.rows, sample, seed)
    det = None
    if face_clips > 0 and result.dataset in FACE_CROPPED:
        from unilearn.data.face import FaceDetector

        det = FaceDetector(detector, min_face_size=12)
    for i, r in enumerate(
        tqdm(
            rows,
            desc=f"{result.dataset}: media sample",
            unit="clip",
            disable=not progress,
            leave=False,
        )
    ):
        out.clips += 1
        try:
            frames = read_sample_frames(r)
        except (MediaError, OSError, ValueError, IndexError) as err:
            out.unreadable.append((r["clip_id"], str(err).splitlines()[0]))
            continue
        out.sizes.update(f.shape[:2] for f in frames)
        if det is not None and i < face_clips:
            out.face_fraction += [largest_face_fraction(det, f) for f in frames]
    return out


def media_findings(result: NativeRead, s: MediaSample, synthetic: bool) -> list[Finding]:
    """Findings about frames per clip, DFEW variant, frame size, unreadable media and faces."""
    findings: list[Finding] = []
    if s.unreadable:
        findings.append(
            Finding(
                ERROR,
                "unreadable_media",
                f"{len(s.unreadable)} of {s.clips} sampled clips cannot be read",
                "re-extract or re-download these clips",
                tuple(f"{c}: {why}" for c, why in s.unreadable),
            )
        )
    n_frames = [int(r["n_frames"]) for r in result.rows if int(r["n_frames"]) > 0]
    if result.dataset == "dfew" and n_frames:
        share16 = sum(n == 16 for n in n_frames) / len(n_frames)
        frames_dir = result.info.get("frames_dir") or ""
        if frames_dir.endswith(VARIANT_DIR_16F) or share16 >= 0.9:
            findings.append(
                Finding(
                    ERROR,
                    "time_normalised_variant",
                    f"these are DFEW's 16-frame time-normalised clips ({share16:.0%} of clips have exactly 16 frames; folder {frames_dir})",
                    "use the original frames (Clip/jpg_256, Clip/jpg_224 or Clip/clip_224x224): the paper samples 16 frames from the original clips",
                )
            )
        else:
            findings.append(
                Finding(
                    OK,
                    "original_frames",
                    f"original frames in {frames_dir} ({statistics.median(n_frames):.0f} frames per clip median, {min(n_frames)}-{max(n_frames)})",
                )
            )
    if s.sizes:
        (h, w), _ = s.sizes.most_common(1)[0]
        sizes = ", ".join(f"{a}x{b} ({n})" for (a, b), n in s.sizes.most_common(4))
        if min(h, w) < 160 and not synthetic and result.dataset != "voxceleb2":
            findings.append(
                Finding(
                    WARNING,
                    "small_frames",
                    f"frames are {h}x{w}, smaller than the 160x160 the paper trains at (sizes: {sizes})",
                    "check that these are the full-resolution frames",
                )
            )
        else:
            findings.append(
                Finding(OK, "frame_size", f"frame size {h}x{w} (sampled frames: {sizes})")
            )
    if s.face_fraction:
        found = [f for f in s.face_fraction if f > 0]
        share_found = len(found) / len(s.face_fraction)
        median = statistics.median(found) if found else 0.0
        if found and sum(f < SMALL_FACE for f in found) > len(found) / 2:
            findings.append(
                Finding(
                    ERROR,
                    "not_face_crops",
                    f"faces are small in the frame (median face {median:.0%} of the frame in {len(s.face_fraction)} sampled frames): "
                    "these look like full-scene frames, not the dataset's face crops",
                    "use the dataset's face-cropped frames (or run `unilearn preprocess --detect always` to crop faces first)",
                )
            )
        elif share_found < 0.3:
            findings.append(
                Finding(
                    WARNING,
                    "faces_not_found",
                    f"the face detector found a face in only {share_found:.0%} of {len(s.face_fraction)} sampled frames",
                    "look at a few frames: are these faces?",
                )
            )
        elif median < LARGE_FACE:
            findings.append(
                Finding(
                    WARNING,
                    "faces_smallish",
                    f"faces cover a median {median:.0%} of the frame; face crops usually show one face filling it",
                )
            )
        else:
            findings.append(
                Finding(
                    OK,
                    "faces_cropped",
                    f"faces cropped: one large face fills the frame (median {median:.0%} of the frame, found in {share_found:.0%} of {len(s.face_fraction)} sampled frames)",
                )
            )
    return findings
