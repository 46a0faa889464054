"""FERV39K as distributed: `2_ClipsforFaceCrop/<scene>/<Emotion>/<4-digit id>/*.jpg` and
`4_setups/All_scenes/{train_All,test_All}.csv`, lines `<scene>/<Emotion>/<id> <Emotion>` (no
header, space separated). A row whose label is not the emotion folder of its own path is
quarantined (`label_contradicts_path`): one of the two was edited, and neither can be trusted."""

from __future__ import annotations

from pathlib import Path

from unilearn.catalogue import FERV39K
from unilearn.data.native.common import (
    NativeRead,
    finish_frame_folders,
    quarantined,
    require_dir,
    require_root,
    split_file_entries,
)

SPLIT_DIR = "4_setups/All_scenes"
FRAMES_DIR = "2_ClipsforFaceCrop"
SPLIT_FILES = {"train": "train_All.csv", "test": "test_All.csv"}


def _parse_line(line: str) -> tuple[str, tuple[str, str] | None]:
    # the clip path comes first; the label is the last field (scene names never end a line)
    fields = line.strip().rsplit(" ", 1)
    if len(fields) != 2 or fields[0].count("/") < 2:
        return fields[0], None
    return fields[0], (fields[0], fields[1])


def read(root: str | Path, *, workers: int, progress: bool = True, **_) -> NativeRead:
    """Every row of the official All_scenes train/test split (fold is null)."""
    root = require_root(root, "FERV39K", "FERV39K", "4_setups")
    require_dir(root / SPLIT_DIR, "FERV39K", "the split files (4_setups/All_scenes/)")
    require_dir(root / FRAMES_DIR, "FERV39K", "the face-crop frame folders (2_ClipsforFaceCrop/)")
    out = NativeRead("ferv39k", root)
    entries = []
    for split, name in SPLIT_FILES.items():
        listed = split_file_entries(
            out,
            f"{SPLIT_DIR}/{name}",
            f"the {split} split file",
            fold=None,
            split=split,
            parse=_parse_line,
            expected="<scene>/<Emotion>/<id> <Emotion>",
            frames_dir=FRAMES_DIR,
        )
        entries += _agreeing_with_path(out, listed)
    return finish_frame_folders(out, entries, FERV39K, (), FRAMES_DIR, "FERV39K", workers, progress)


def _agreeing_with_path(out: NativeRead, entries: list[dict]) -> list[dict]:
    """`entries` whose label names the emotion folder of their path; the others quarantined."""
    kept = []
    for e in entries:
        folder = e["clip_id"].split("/")[-2]
        label = e["native_label"]
        if folder in FERV39K.native and label in FERV39K.native and folder != label:
            bad = {**e, "label": -1, "label_name": ""}
            bad.pop("native_label")
            out.quarantine.append(
                quarantined(
                    bad,
                    "label_contradicts_path",
                    f"{e['source_file']}: clip {e['clip_id']} is labelled {label}, but its path is "
                    f"under the {folder} folder",
                )
            )
        else:
            kept.append(e)
    return kept
