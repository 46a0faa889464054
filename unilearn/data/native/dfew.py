"""DFEW as distributed: `Clip/jpg_256/<5-digit id>/*.jpg` (or `Clip/clip_224x224/`, the same
original frames; `Clip/clip_224x224_16f/` is the 16-frame time-normalised variant) and
`EmoLabel_DataSplit/{train,test}(single-labeled)/set_<1-5>.csv` with `video_name,label` (1-7)."""

from __future__ import annotations

from pathlib import Path

from unilearn.data.labels import DFEW, FOLDS
from unilearn.data.native.common import (
    NativeRead,
    SplitFileError,
    attach_frame_counts,
    check_folds,
    drop_duplicates,
    quarantined,
    read_lines,
    require_dir,
    require_file,
    require_root,
    resolve_labels,
    row,
)

# Frame folders in order of preference: the original frames first.
FRAME_DIRS = ("Clip/jpg_256", "Clip/clip_224x224", "Clip/clip_224x224_16f")
SPLIT_DIR = "EmoLabel_DataSplit"


def split_file(split: str, fold: int) -> str:
    return f"{SPLIT_DIR}/{split}(single-labeled)/set_{fold}.csv"


def read(
    root: str | Path,
    *,
    workers: int = 16,
    progress: bool = True,
    frames_dir: str | None = None,
    **_,
) -> NativeRead:
    """Every (fold, split) row of the single-labeled 5-fold protocol, plus the quarantine."""
    root = require_root(root, "DFEW", "DFEW", SPLIT_DIR)
    require_dir(root / SPLIT_DIR, "DFEW", "the split files (EmoLabel_DataSplit/)")
    if frames_dir is None:
        frames_dir = next((d for d in FRAME_DIRS if (root / d).is_dir()), None)
        if frames_dir is None:
            require_dir(root / FRAME_DIRS[0], "DFEW", "the frame folders (Clip/jpg_256/<id>/)")
    out = NativeRead("dfew", root, info={"frames_dir": frames_dir})
    entries = []
    for fold in FOLDS["dfew"]:
        for split in ("train", "test"):
            rel = split_file(split, fold)
            path = require_file(root / rel, "DFEW", f"the fold-{fold} {split} split file")
            lines = read_lines(path, "DFEW")
            if not lines or [c.strip() for c in lines[0].split(",")] != ["video_name", "label"]:
                raise SplitFileError(
                    f"DFEW: {path} line 1: expected the header 'video_name,label', got {lines[0][:60] if lines else 'an empty file'!r}"
                )
            for i, line in enumerate(lines[1:], start=2):
                if not line.strip():
                    continue
                src = f"{rel}:{i}"
                fields = [f.strip() for f in line.split(",")]
                base = row("dfew", fields[0], "", "frames", -1, "", fold, split, 0, src)
                if len(fields) != 2 or not fields[0].isdigit():
                    out.quarantine.append(
                        quarantined(
                            base,
                            "malformed_line",
                            f"{src}: expected '<video id>,<label 1-7>', got {line[:60]!r}",
                        )
                    )
                    continue
                base["clip_id"] = f"{int(fields[0]):05d}"
                base["path"] = f"{root}/{frames_dir}/{base['clip_id']}"
                entries.append({**base, "native_label": fields[1]})
    out.findings = check_folds(entries, FOLDS["dfew"], "DFEW")
    entries, bad = resolve_labels(entries, DFEW)
    out.quarantine += bad
    entries, bad = drop_duplicates(entries)
    out.quarantine += bad
    out.rows, bad = attach_frame_counts(
        entries, lambda e: f"{frames_dir}/{e['clip_id']}", root, "DFEW", workers, progress
    )
    out.quarantine += bad
    return out
