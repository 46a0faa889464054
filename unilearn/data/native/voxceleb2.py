"""VoxCeleb2 as distributed: `dev/mp4/<speaker id>/<youtube id>/<5-digit>.mp4`, unlabeled (label -1,
split train, fold null). Frames are counted from the container's metadata (fast), by demuxing when
the container does not say; videos that cannot be opened or have no frames are quarantined. At full
scale (1,092,009 files) the count runs in a process pool; `count_frames=False` skips it (n_frames
-1, unreadable files are then found by `unilearn preprocess`).

A file named `.mp4` that holds an image (FFmpeg opens a JPEG as a 1-frame "video") is not a video
and is quarantined. Files at another depth under dev/mp4, or with an upper-case `.MP4`, are
quarantined as `misplaced_video` (counted, never skipped without a word); a tree extracted one
level too deep (no mp4 where the layout puts them, all of them deeper) is an error naming where
they are."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from unilearn.data.native.common import (
    DatasetLayoutError,
    NativeRead,
    no_rows_error,
    quarantined,
    require_dir,
    require_root,
    row,
)

VIDEO_DIR = "dev/mp4"
_POOL_MIN_FILES = 2000


def count_video_frames(path: str) -> tuple[int, str]:
    """(frames, "") or (0, what went wrong). Container metadata first; demux packets if absent."""
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                return 0, "has no video stream"
            fmt = container.format.name
            if fmt == "image2" or fmt.endswith("_pipe"):
                return 0, f"is not a video but an image ({fmt.removesuffix('_pipe')} data)"
            stream = container.streams.video[0]
            n = int(stream.frames or 0)
            if n == 0:
                n = sum(1 for p in container.demux(stream) if p.size > 0)
    except (av.FFmpegError, OSError, ValueError) as err:
        return 0, f"cannot be opened ({type(err).__name__}: {err})"
    return (n, "") if n > 0 else (0, "has zero frames")


def _count_many(paths: list[str]) -> list[tuple[int, str]]:
    return [count_video_frames(p) for p in paths]


def list_videos(root: Path) -> tuple[list[str], list[str]]:
    """(relative paths `<speaker>/<youtube id>/<n>.mp4`, every other file whose name ends in
    .mp4 in any case, at any depth), both sorted. scandir keeps a 1M-file walk fast."""
    found, misplaced = [], []

    def walk(path: str, rel: str, depth: int) -> None:
        with os.scandir(path) as it:
            for e in it:
                name = f"{rel}{e.name}"
                if e.is_dir():
                    walk(e.path, f"{name}/", depth + 1)
                elif e.name.lower().endswith(".mp4"):
                    ok = depth == 2 and e.name.endswith(".mp4")
                    (found if ok else misplaced).append(name)

    walk(str(root / VIDEO_DIR), "", 0)
    return sorted(found), sorted(misplaced)


def _misplaced_reason(rel: str) -> str:
    depth = rel.count("/")
    if depth == 2:
        return f"{VIDEO_DIR}/{rel}: upper-case extension; rename it to .mp4 to use it"
    return (
        f"{VIDEO_DIR}/{rel}: not at {VIDEO_DIR}/<speaker>/<youtube id>/<n>.mp4 ({depth - 2:+d} "
        "level(s)); move it there to use it"
    )


def _too_deep(root: Path, misplaced: list[str]) -> DatasetLayoutError | None:
    """The error for a tree with no mp4 where the layout puts them and some deeper down."""
    deeper = [m for m in misplaced if m.count("/") > 2]
    if not deeper:
        return None
    extra = min(m.count("/") for m in deeper) - 2
    where = sorted({"/".join(m.split("/")[:extra]) for m in deeper if m.count("/") - 2 == extra})
    example = root / VIDEO_DIR / where[0]
    return DatasetLayoutError(
        f"VoxCeleb2: no mp4 at {root / VIDEO_DIR}/<speaker>/<youtube id>/*.mp4, but {len(deeper)} "
        f"mp4 file(s) {extra} level(s) deeper, under {example}"
        + (f" (and {len(where) - 1} other folder(s))" if len(where) > 1 else "")
        + f": the archive was extracted one level too deep; move the speaker folders of {example} "
        f"to {root / VIDEO_DIR}"
    )


def read(
    root: str | Path, *, workers: int, progress: bool = True, count_frames: bool = True, **_
) -> NativeRead:
    """One row per mp4 under dev/mp4 (the pre-training set)."""
    root = require_root(root, "VoxCeleb2", "VoxCeleb2", "dev")
    require_dir(root / VIDEO_DIR, "VoxCeleb2", "the videos (dev/mp4/<speaker>/<youtube id>/*.mp4)")
    out = NativeRead("voxceleb2", root, info={"frames_counted": count_frames})
    rels, misplaced = list_videos(root)
    if not rels:
        raise _too_deep(root, misplaced) or no_rows_error(
            "VoxCeleb2", root, f"no mp4 under {root / VIDEO_DIR}/<speaker>/<youtube id>/"
        )
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
    for rel in misplaced:
        entry = row(
            "voxceleb2", rel.rsplit(".", 1)[0], root / VIDEO_DIR / rel, "video", -1, "", None,
            "train", 0, f"{VIDEO_DIR}/{rel}",
        )  # fmt: skip
        out.quarantine.append(quarantined(entry, "misplaced_video", _misplaced_reason(rel)))
    return out


def _count_parallel(paths: list[str], workers: int, progress: bool) -> list[tuple[int, str]]:
    """Frame counts in a process pool (PyAV releases little of the GIL), in chunks, with a bar."""
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
