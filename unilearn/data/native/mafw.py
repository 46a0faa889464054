"""MAFW as distributed: `data/frames/<5-digit id>/*.jpg` and
`split/single/no_caption/set_<1-5>/{train,test}.txt` (some copies name the split folder
`Train & Test Set/single/no_caption`), lines `<id>.mp4 <label name>`."""

from __future__ import annotations

from pathlib import Path

from unilearn.data.labels import FOLDS, MAFW
from unilearn.data.native.common import (
    NativeRead,
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

SPLIT_DIRS = ("split/single/no_caption", "Train & Test Set/single/no_caption")
FRAMES_DIR = "data/frames"


def read(root: str | Path, *, workers: int = 16, progress: bool = True, **_) -> NativeRead:
    """Every (fold, split) row of the single-labeled, no-caption 5-fold protocol."""
    root = require_root(root, "MAFW", "MAFW", "data")
    split_dir = next((d for d in SPLIT_DIRS if (root / d).is_dir()), None)
    if split_dir is None:
        require_dir(
            root / SPLIT_DIRS[0], "MAFW", "the split files (split/single/no_caption/set_<k>/)"
        )
    require_dir(root / FRAMES_DIR, "MAFW", "the frame folders (data/frames/<id>/)")
    out = NativeRead("mafw", root, info={"split_dir": split_dir})
    entries = []
    for fold in FOLDS["mafw"]:
        for split in ("train", "test"):
            rel = f"{split_dir}/set_{fold}/{split}.txt"
            lines = read_lines(
                require_file(root / rel, "MAFW", f"the fold-{fold} {split} split file"), "MAFW"
            )
            for i, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                src = f"{rel}:{i}"
                fields = line.split()
                stem = fields[0].rsplit(".", 1)[0] if fields else ""
                base = row("mafw", stem, "", "frames", -1, "", fold, split, 0, src)
                if len(fields) != 2 or not stem.isdigit():
                    out.quarantine.append(
                        quarantined(
                            base,
                            "malformed_line",
                            f"{src}: expected '<id>.mp4 <label name>', got {line[:60]!r}",
                        )
                    )
                    continue
                base["clip_id"] = f"{int(stem):05d}"
                base["path"] = f"{root}/{FRAMES_DIR}/{base['clip_id']}"
                entries.append({**base, "native_label": fields[1]})
    out.findings = check_folds(entries, FOLDS["mafw"], "MAFW")
    entries, bad = resolve_labels(entries, MAFW)
    out.quarantine += bad
    entries, bad = drop_duplicates(entries)
    out.quarantine += bad
    out.rows, bad = attach_frame_counts(
        entries, lambda e: f"{FRAMES_DIR}/{e['clip_id']}", root, "MAFW", workers, progress
    )
    out.quarantine += bad
    return out
