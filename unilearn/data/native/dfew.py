"""DFEW as distributed: `Clip/jpg_256/<5-digit id>/*.jpg` (or `Clip/jpg_224/`, the folder name of
newer downloads, or `Clip/clip_224x224/`: the same original frames; `Clip/clip_224x224_16f/` is the
16-frame time-normalised variant) and `EmoLabel_DataSplit/{train,test}(single-labeled)/set_<1-5>.csv`
with `video_name,label` (1-7).

Some redistributed copies number the labels 0-6. Read as 1-7 every row would carry the class
before its own, so a split file whose labels span 0..6 and never 7 is refused (`SplitFileError`)
unless the caller says the labels are 0-based (`zero_based_labels=True`), which shifts them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from unilearn.catalogue import DFEW, FOLDS
from unilearn.data.native.common import (
    SPLITS,
    NativeRead,
    SplitFileError,
    finish_frame_folders,
    require_dir,
    require_root,
    split_file_entries,
)

# The 16-frame time-normalised variant (not the original frames; the doctor says so).
TIME_NORMALISED_DIR = "Clip/clip_224x224_16f"
# Frame folders in order of preference: the original frames first.
FRAME_DIRS = ("Clip/jpg_256", "Clip/jpg_224", "Clip/clip_224x224", TIME_NORMALISED_DIR)
SPLIT_DIR = "EmoLabel_DataSplit"
SPLIT_HEADER = ("video_name", "label")


def split_file(split: str, fold: int) -> str:
    """The split file of (`split`, `fold`), relative to the dataset root."""
    return f"{SPLIT_DIR}/{split}(single-labeled)/set_{fold}.csv"


def _parse_line(line: str) -> tuple[str, tuple[str, str] | None]:
    fields = [f.strip() for f in line.split(",")]
    if len(fields) != 2 or not fields[0].isdigit():
        return fields[0], None
    return fields[0], (f"{int(fields[0]):05d}", fields[1])


def read(
    root: str | Path,
    *,
    workers: int,
    progress: bool = True,
    frames_dir: str | None = None,
    zero_based_labels: bool = False,
    **_,
) -> NativeRead:
    """Every (fold, split) row of the single-labeled 5-fold protocol, plus the quarantine.

    `zero_based_labels`: the split files number the classes 0-6; each label is read as label + 1."""
    root = require_root(root, "DFEW", "DFEW", SPLIT_DIR)
    require_dir(root / SPLIT_DIR, "DFEW", "the split files (EmoLabel_DataSplit/)")
    if frames_dir is None:
        frames_dir = next((d for d in FRAME_DIRS if (root / d).is_dir()), None)
        if frames_dir is None:
            require_dir(root / FRAME_DIRS[0], "DFEW", "the frame folders (Clip/jpg_256/<id>/)")
    out = NativeRead("dfew", root, info={"frames_dir": frames_dir})
    entries = []
    for fold in FOLDS["dfew"]:
        for split in SPLITS:
            rel = split_file(split, fold)
            listed = split_file_entries(
                out,
                rel,
                f"the fold-{fold} {split} split file",
                fold=fold,
                split=split,
                parse=_parse_line,
                expected="<video id>,<label 1-7>",
                frames_dir=frames_dir,
                header=SPLIT_HEADER,
            )
            entries += _label_base(listed, root / rel, zero_based_labels)
    return finish_frame_folders(
        out, entries, DFEW, FOLDS["dfew"], frames_dir, "DFEW", workers, progress
    )


def _label_base(entries: list[dict], path: Path, zero_based: bool) -> list[dict]:
    """The entries of one split file with 1-based labels; 0-based files are refused unless
    `zero_based` (then shifted). A file is 0-based when its labels span 0..6 and it has no 7."""
    numbers = {int(e["native_label"]) for e in entries if e["native_label"].isdigit()}
    top = len(DFEW.classes)  # 7
    looks_zero_based = 0 in numbers and top not in numbers
    if zero_based:
        if top in numbers:
            raise SplitFileError(
                f"DFEW: {path}: told the labels are 0-based, but this file's labels are "
                f"{sorted(numbers)} (0-based labels span 0-6, never 7); drop the 0-based option "
                "for this copy"
            )
        for e in entries:
            if e["native_label"].isdigit():
                e["native_label"] = str(int(e["native_label"]) + 1)
    elif looks_zero_based:
        counts = Counter(int(e["native_label"]) for e in entries if e["native_label"].isdigit())
        raise SplitFileError(
            f"DFEW: {path}: 0-based labels: this file's labels span 0-6 and never 7 "
            f"({counts[0]} rows labelled 0), while DFEW numbers its classes 1-7 "
            f"({', '.join(f'{i + 1} {c}' for i, c in enumerate(DFEW.classes))}). Read as 1-7, every "
            "clip would carry the class before its own. Restore the original split files, or read "
            "this copy with `unilearn manifest dfew --zero-based-labels` if its labels are the "
            "originals minus one"
        )
    return entries
