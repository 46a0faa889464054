"""Tiny media made in tests (frame folders, mp4s, a raw video with a real face in a larger scene),
for the face, preprocess, store and loader tests before and besides `unilearn synth`."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pandas as pd
from PIL import Image


def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def raw_face_video(
    n_frames: int = 20, height: int = 240, width: int = 424, step: int = 6
) -> np.ndarray:
    """The astronaut's head (downscaled) drifting right across a larger grey scene."""
    face = astronaut()[::2, ::2][:200, 40:220]  # head and shoulders, 200 x 180
    frames = np.full((n_frames, height, width, 3), 70, np.uint8)
    for t in range(n_frames):
        x = 20 + step * t
        frames[t, 20 : 20 + face.shape[0], x : x + face.shape[1]] = face
    return frames


def write_mp4(path: Path, frames: np.ndarray, fps: int = 25, gop: int = 12) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "g": str(gop), "preset": "veryfast"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_frames(folder: Path, frames: np.ndarray, ext: str = "jpg") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i + 1}.{ext}", quality=95)
    return folder


def moving_pattern(n_frames: int, size: int = 96, seed: int = 0) -> np.ndarray:
    """A clip whose frames differ (a drifting gradient + noise), so temporal sampling is visible."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    frames = []
    for t in range(n_frames):
        base = (xx * 2 + yy + 8 * t) % 256
        frame = np.stack([base, (base + 85) % 256, (255 - base)], axis=-1)
        frame = frame + rng.integers(0, 8, frame.shape)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return np.stack(frames)


def manifest_row(
    dataset: str,
    clip_id: str,
    path: Path,
    media: str,
    label: int,
    n_frames: int,
    split: str = "train",
    fold: int | None = None,
    label_name: str = "",
) -> dict:
    return {
        "dataset": dataset, "clip_id": clip_id, "path": str(path), "media": media,
        "label": label, "label_name": label_name, "fold": fold, "split": split,
        "n_frames": n_frames, "source_file": f"test:{clip_id}",
    }  # fmt: skip


def manifest_frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df["label"] = df["label"].astype("int16")
    df["fold"] = df["fold"].astype("Int8")
    df["n_frames"] = df["n_frames"].astype("int32")
    return df
