"""VoxCeleb2 as distributed: `dev/mp4/<speaker id>/<youtube id>/<5-digit>.mp4`, unlabeled (label -1,
split train, fold null). Frames are counted from the container's metadata (fast), by demuxing when
the container does not say; videos that cannot be opened or have no frames are quarantined. At full
scale (1,092,009 files) the count runs in a process pool; `count_frames=False` skips it (n_frames
-1, unreadable files are then found by `unilearn preprocess`)."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from unilearn.data.native.common import NativeRead, quarantined, require_dir, require_root, row

VIDEO_DIR = "dev/mp4"
_POOL_MIN_FILES = 2000


def count_video_frames(path: str) -> tuple[int, str]:
    """(frames, "") or (0, what went wrong). Container metadata first; demux packets if absent."""
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                return 0, "has no video stream"
            stream = container.streams.video[0]
            n = int(stream.frames or 0)
            if n == 0:
                n = sum(1 for p in container.demux(stream) if p.size > 0)
    except (av.FFmpegError, OSError, ValueError) as err:
        return 0, f"cannot be opened ({type(err).__name__}: {err})"
    return (n, "") if n > 0 else (0, "has zero frames")


def _count_many(paths: list[str]) -> list[tuple[int, str]]:
    return [count_video_frames(p) for p in paths]


def list_videos(root: Path) -> list[str]:
    """Relative paths `<speaker>/<youtube id>/<n>.mp4`, sorted; scandir keeps a 1M-file walk fast."""
    base = root / VIDEO_DIR
    found = []
    with os.scandir(base) as speakers:
        for s in speakers:
            if not s.is_dir():
                continue
            with os.scandir(s.path) as videos:
                for v in videos:
                    if not v.is_dir():
                        continue
                    with os.scandir(v.path) as clips:
                        found += [
                            f"{s.name}/{v.name}/{c.name}" for c in clips if c.name.endswith(".mp4")
                        ]
    return sorted(found)


def read(
    root: str | Path, *, workers: int = 0, progress: bool = True, count_frames: bool = True, **_
) -> NativeRead:
    """One row per mp4 under dev/mp4 (the pre-training set)."""
    root = require_root(root, "VoxCeleb2", "VoxCeleb2", "dev")
    require_dir(root / VIDEO_DIR, "VoxCeleb2", "the videos (dev/mp4/<speaker>/<youtube id>/*.mp4)")
    out = NativeRead("voxceleb2", root, info={"frames_counted": count_frames})
    rels = list_videos(root)
    if count_frames:
        counts = _count_parallel([str(root / VIDEO_DIR / r) for r in rels], workers, progress)
    else:
        counts = [(-1, "")] * len(rels)
    for rel, (n, problem) in zip(rels, counts):
        entry = row(
            "voxceleb2",
            rel[: -len(".mp4")],
            root / VIDEO_DIR / rel,
            "video",
            -1,
            "",
            None,
            "train",
            n,
            f"{VIDEO_DIR}/{rel}",
        )
        if problem:
            out.quarantine.append(
                quarantined(entry, "unreadable_video", f"{VIDEO_DIR}/{rel}: video {problem}")
            )
        else:
            out.rows.append(entry)
    return out


def _count_parallel(paths: list[str], workers: int, progress: bool) -> list[tuple[int, str]]:
    """Frame counts in a process pool (PyAV releases little of the GIL), in chunks, with a bar."""
    workers = workers or min(8, os.cpu_count() or 1)
    chunk = 64
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    bar = tqdm(
        total=len(paths),
        desc="VoxCeleb2: frames",
        unit="video",
        disable=not progress or len(paths) < 256,
        leave=False,
    )
    results: list[tuple[int, str]] = []
    # below a few thousand files starting the pool costs more than it saves (bench/manifest_scale.py)
    if workers <= 1 or len(paths) < _POOL_MIN_FILES:
        for c in chunks:
            results += _count_many(c)
            bar.update(len(c))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for part in pool.map(_count_many, chunks):
                results += part
                bar.update(len(part))
    bar.close()
    return results
