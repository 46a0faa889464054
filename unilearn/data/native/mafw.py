"""MAFW as distributed: `data/frames/<5-digit id>/*.jpg` and
`split/single/no_caption/set_<1-5>/{train,test}.txt` (some copies name the split folder
`Train & Test Set/single/no_caption`), lines `<id>.mp4 <label name>`."""

from __future__ import annotations

from pathlib import Path

from unilearn.catalogue import FOLDS, MAFW
from unilearn.data.native.common import (
    SPLITS,
    NativeRead,
    finish_frame_folders,
    require_dir,
    require_root,
    split_file_entries,
)

SPLIT_DIRS = ("split/single/no_caption", "Train & Test Set/single/no_caption")
FRAMES_DIR = "data/frames"


def split_file(split: str, fold: int, split_dir: str = SPLIT_DIRS[0]) -> str:
    """The split file of (`split`, `fold`) under `split_dir`, relative to the dataset root."""
    return f"{split_dir}/set_{fold}/{split}.txt"


def _parse_line(line: str) -> tuple[str, tuple[str, str] | None]:
    fields = line.split()
    stem = fields[0].rsplit(".", 1)[0] if fields else ""
    if len(fields) != 2 or not stem.isdigit():
        return stem, None
    return stem, (f"{int(stem):05d}", fields[1])


def read(root: str | Path, *, workers: int, progress: bool = True, **_) -> NativeRead:
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
        for split in SPLITS:
            entries += split_file_entries(
                out,
                split_file(split, fold, split_dir),
                f"the fold-{fold} {split} split file",
                fold=fold,
                split=split,
                parse=_parse_line,
                expected="<id>.mp4 <label name>",
                frames_dir=FRAMES_DIR,
            )
    return finish_frame_folders(
        out, entries, MAFW, FOLDS["mafw"], FRAMES_DIR, "MAFW", workers, progress
    )
