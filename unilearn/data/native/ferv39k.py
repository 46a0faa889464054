"""FERV39K as distributed: `2_ClipsforFaceCrop/<scene>/<Emotion>/<4-digit id>/*.jpg` and
`4_setups/All_scenes/{train_All,test_All}.csv`, lines `<scene>/<Emotion>/<id> <Emotion>` (no
header, space separated)."""

from __future__ import annotations

from pathlib import Path

from unilearn.data.labels import FERV39K
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

SPLIT_DIR = "4_setups/All_scenes"
FRAMES_DIR = "2_ClipsforFaceCrop"
SPLIT_FILES = {"train": "train_All.csv", "test": "test_All.csv"}


def read(root: str | Path, *, workers: int = 16, progress: bool = True, **_) -> NativeRead:
    """Every row of the official All_scenes train/test split (fold is null)."""
    root = require_root(root, "FERV39K", "FERV39K", "4_setups")
    require_dir(root / SPLIT_DIR, "FERV39K", "the split files (4_setups/All_scenes/)")
    require_dir(root / FRAMES_DIR, "FERV39K", "the face-crop frame folders (2_ClipsforFaceCrop/)")
    out = NativeRead("ferv39k", root)
    entries = []
    for split, name in SPLIT_FILES.items():
        rel = f"{SPLIT_DIR}/{name}"
        lines = read_lines(
            require_file(root / rel, "FERV39K", f"the {split} split file"), "FERV39K"
        )
        for i, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            src = f"{rel}:{i}"
            # the clip path comes first; the label is the last field (scene names never end a line)
            fields = line.strip().rsplit(" ", 1)
            base = row("ferv39k", fields[0], "", "frames", -1, "", None, split, 0, src)
            if len(fields) != 2 or fields[0].count("/") < 2:
                out.quarantine.append(
                    quarantined(
                        base,
                        "malformed_line",
                        f"{src}: expected '<scene>/<Emotion>/<id> <Emotion>', got {line[:80]!r}",
                    )
                )
                continue
            base["path"] = f"{root}/{FRAMES_DIR}/{fields[0]}"
            entries.append({**base, "native_label": fields[1]})
    out.findings = check_folds(entries, (), "FERV39K")
    entries, bad = resolve_labels(entries, FERV39K)
    out.quarantine += bad
    entries, bad = drop_duplicates(entries)
    out.quarantine += bad
    out.rows, bad = attach_frame_counts(
        entries, lambda e: f"{FRAMES_DIR}/{e['clip_id']}", root, "FERV39K", workers, progress
    )
    out.quarantine += bad
    return out
