"""One synthetic clip: its plan (which actor, which emotion, where the face is, how the
expression unfolds), its frames (drawn by `unilearn.data.synth_face`) and their files (JPEG frames,
an H.264 mp4 whose bytes are the same on every run). Every clip draws from its own random stream,
`clip_rng(seed, dataset, index)`, so its pixels depend on nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from unilearn.data.synth_face import (
    Identity,
    Pose,
    expression_at,
    render,
    render_background,
    sample_identity,
)

# Each dataset's number in the clips' random streams (changing one changes that dataset's pixels).
DATASET_CODES = {"dfew": 1, "mafw": 2, "ferv39k": 3, "affectnet": 4, "voxceleb2": 5, "raw": 6}


def clip_rng(seed: int, dataset: str, index: int) -> np.random.Generator:
    """One independent stream per clip: a clip's pixels depend only on (seed, dataset, index)."""
    return np.random.default_rng([seed, DATASET_CODES[dataset], index])


@dataclass(frozen=True)
class ClipPlan:
    """Who plays which emotion where, and how the expression unfolds over the clip."""

    emotion: str
    identity: Identity
    pose: Pose
    intensity: float
    start: float
    speed: float
    phase: float

    def face_at(self, t: float, pose: Pose | None = None, talk: float = 0.0):
        """The face at time `t` in [0, 1] of the clip (`pose`: where it is now, if it moves)."""
        return expression_at(
            self.emotion,
            t,
            intensity=self.intensity,
            start=self.start,
            speed=self.speed,
            phase=self.phase,
            identity=self.identity,
            pose=self.pose if pose is None else pose,
            talk=talk,
        )


def plan_clip(
    rng: np.random.Generator,
    emotion: str,
    width: int,
    height: int,
    face_fraction: tuple[float, float],
    cast: list[Identity] | None = None,
) -> ClipPlan:
    """A clip of `emotion` on a `width` x `height` frame, the face's half width a fraction
    `face_fraction` (min, max) of the short side; played by one of `cast` (else a new person)."""
    if cast:  # an actor of the pool, in this clip's own blinks and gaze
        identity = replace(
            cast[int(rng.integers(len(cast)))],
            gaze=(float(rng.uniform(-0.3, 0.3)), float(rng.uniform(-0.2, 0.2))),
            blinks=tuple(rng.uniform(0, 1, rng.integers(0, 3)).tolist()),
        )
    else:
        identity = sample_identity(rng)
    side = min(width, height)
    pose = Pose(
        cx=width * 0.5 + side * rng.uniform(-0.05, 0.05),
        cy=height * 0.5 + side * rng.uniform(-0.03, 0.06),
        half_width=side * rng.uniform(*face_fraction),
        roll=float(rng.uniform(-6, 6)),
    )
    return ClipPlan(
        emotion,
        identity,
        pose,
        intensity=float(rng.uniform(0.75, 1.0)),
        start=float(rng.uniform(0.0, 0.3)),
        speed=float(rng.uniform(0.7, 1.3)),
        phase=float(rng.uniform(0, 1)),
    )


def render_clip(
    rng: np.random.Generator,
    plan: ClipPlan,
    n_frames: int,
    width: int,
    height: int,
    talk: float = 0.0,
) -> Iterator[np.ndarray]:
    """The frames (uint8 RGB) of one clip of `plan.emotion`."""
    background = render_background(height, width, plan.identity)
    for i in range(n_frames):
        yield render(
            background, plan.identity, plan.face_at(i / max(n_frames - 1, 1), talk=talk), rng
        )


def write_jpeg(path: Path, rgb: np.ndarray, quality: int) -> None:
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {path}")
    path.write_bytes(buf.tobytes())


def write_mp4(path: Path, frames: list[np.ndarray], fps: int = 25) -> None:
    """H.264 mp4 as VoxCeleb2 distributes it; single-threaded so the bytes are reproducible."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        # single-threaded and without x264's lookahead / macroblock tree, whose output changed
        # with the process's heap state: the same frames must always give the same bytes
        stream.options = {
            "crf": "20",
            "preset": "veryfast",
            "threads": "1",
            "x264-params": "no-mbtree=1:rc-lookahead=0:sync-lookahead=0",
        }
        stream.codec_context.thread_count = 1
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
