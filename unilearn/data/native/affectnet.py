"""AffectNet as distributed: images under `Manually_Annotated_Images/<subdir>/<name>.jpg` and the
annotation tables `Manually_Annotated_file_lists/{training,validation}.csv` with columns
subDirectory_filePath, face_x, face_y, face_width, face_height, facial_landmarks, expression (0-7
emotions; 8 none, 9 uncertain, 10 no face), valence, arousal. The real validation.csv has no
header row; both forms are read. The validation set is the test split (paper protocol).

`read(root)` gives the 8-class `affectnet` rows; `read(root, label_set="affectnet7")` the
AffectNet-7 view, where contempt rows are quarantined (never silently dropped).

A face box of zero size, or one that lies mostly outside its image (image size from the file
header only), would become a blank or flat crop: such rows are quarantined (`bad_face_box`).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from unilearn.catalogue import get_label_set
from unilearn.data.native.common import (
    DatasetLayoutError,
    NativeRead,
    check_folds,
    drop_duplicates,
    parallel_map,
    quarantined,
    read_lines,
    require_root,
    row,
)

HEADER = (
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
)
IMAGE_DIRS = ("Manually_Annotated_Images", "Manually_Annotated/Manually_Annotated_Images")
LIST_DIRS = (
    "Manually_Annotated_file_lists",
    "Manually_Annotated/Manually_Annotated_file_lists",
    ".",
)
TABLES = {"train": "training.csv", "test": "validation.csv"}
NON_EMOTIONS = {8: "none", 9: "uncertain", 10: "no face"}


def _find(root: Path, candidates: tuple[str, ...], probe: str) -> str | None:
    return next((d for d in candidates if (root / d / probe).exists()), None)


def read(
    root: str | Path, *, label_set: str = "affectnet", workers: int, progress: bool = True, **_
) -> NativeRead:
    """One row per annotated image (train = training.csv, test = validation.csv)."""
    labels = get_label_set(label_set)
    root = require_root(root, "AffectNet", "AffectNet", "Manually_Annotated_file_lists")
    list_dir = _find(root, LIST_DIRS, TABLES["train"])
    image_dir = next((d for d in IMAGE_DIRS if (root / d).is_dir()), None)
    if list_dir is None:
        raise DatasetLayoutError(
            f"AffectNet: expected the annotation tables at {root / LIST_DIRS[0] / 'training.csv'} (and validation.csv), which do not exist"
        )
    if image_dir is None:
        raise DatasetLayoutError(
            f"AffectNet: expected the images under {root / IMAGE_DIRS[0]}, which does not exist"
        )
    out = NativeRead(label_set, root, info={"image_dir": image_dir, "list_dir": list_dir})
    entries = []
    for split, name in TABLES.items():
        rel = os.path.normpath(f"{list_dir}/{name}")
        path = root / rel
        if not path.is_file():
            raise DatasetLayoutError(
                f"AffectNet: expected the {split} annotation table at {path}, which does not exist"
            )
        lines = read_lines(path, "AffectNet")
        for i, fields in enumerate(csv.reader(io.StringIO("\n".join(lines))), start=1):
            if not fields or (i == 1 and fields[0].strip() == HEADER[0]):
                continue
            src = f"{rel}:{i}"
            base = row(
                label_set,
                Path(fields[0]).stem,
                f"{root}/{image_dir}/{fields[0]}",
                "image",
                -1,
                "",
                None,
                split,
                1,
                src,
                face_x=-1,
                face_y=-1,
                face_width=-1,
                face_height=-1,
                valence=float("nan"),
                arousal=float("nan"),
            )
            try:
                if len(fields) != len(HEADER):
                    raise ValueError(f"{len(fields)} fields instead of {len(HEADER)}")
                box = [int(float(v)) for v in fields[1:5]]
                code = int(float(fields[6]))
                valence, arousal = float(fields[7]), float(fields[8])
            except ValueError as err:
                out.quarantine.append(
                    quarantined(
                        base, "malformed_line", f"{src}: expected {','.join(HEADER)} ({err})"
                    )
                )
                continue
            base.update(
                face_x=box[0],
                face_y=box[1],
                face_width=box[2],
                face_height=box[3],
                valence=valence,
                arousal=arousal,
            )
            if code in NON_EMOTIONS:
                out.quarantine.append(
                    quarantined(
                        base,
                        "not_an_emotion",
                        f"{src}: image {fields[0]} has expression {code} ({NON_EMOTIONS[code]}), not an emotion class",
                    )
                )
                continue
            if not 0 <= code < 8:
                out.quarantine.append(
                    quarantined(
                        base,
                        "unknown_label",
                        f"{src}: image {fields[0]} has expression {code}, expected 0-7 (or 8-10)",
                    )
                )
                continue
            name_ = get_label_set("affectnet").classes[code]
            if name_ in labels.excluded:
                base.update(label=code, label_name=name_)
                out.quarantine.append(
                    quarantined(
                        base,
                        "excluded_class",
                        f"{src}: image {fields[0]} is {name_}; {name_} is not in {labels.name}",
                    )
                )
                continue
            base.update(label=labels.id_of(code), label_name=name_, rel_image=fields[0])
            entries.append(base)
    out.findings = check_folds(entries, (), "AffectNet")
    entries, bad = drop_duplicates(entries)
    out.quarantine += bad
    sizes = parallel_map(
        lambda e: image_size(e["path"]), entries, "AffectNet: images", workers, progress
    )
    for e, size in zip(entries, sizes):
        rel_image = e.pop("rel_image")
        problem = box_problem(e, size) if size else ""
        if problem:
            out.quarantine.append(
                quarantined(e, "bad_face_box", f"{e['source_file']}: image {rel_image}: {problem}")
            )
        elif size:
            out.rows.append(e)
        else:
            out.quarantine.append(
                quarantined(
                    e,
                    "missing_clip",
                    f"{e['source_file']}: image {rel_image} does not exist under {root / image_dir}",
                )
            )
    for q in out.quarantine:
        q.pop("rel_image", None)
    return out


# A box whose overlap with its image is less than this share of the box is "outside the image".
MIN_BOX_INSIDE = 0.5


def image_size(path: str) -> tuple[int, int] | None:
    """(width, height) from the image header (PIL opens lazily); None when there is no file.
    An unreadable file gives (0, 0): it exists, and preprocess reports what is wrong with it."""
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        return None
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError):
        return (0, 0)


def box_problem(entry: dict, size: tuple[int, int]) -> str:
    """Why the entry's face box cannot give a face crop of its image ("" when it can)."""
    x, y, w, h = (entry[k] for k in ("face_x", "face_y", "face_width", "face_height"))
    width, height = size
    if w <= 0 or h <= 0:
        return f"face box (x {x}, y {y}, width {w}, height {h}) has zero size"
    if width <= 0 or height <= 0:
        return ""
    inside_w = max(0, min(x + w, width) - max(x, 0))
    inside_h = max(0, min(y + h, height) - max(y, 0))
    if inside_w * inside_h < MIN_BOX_INSIDE * w * h:
        return (
            f"face box (x {x}, y {y}, width {w}, height {h}) lies outside the {width}x{height} "
            f"image ({inside_w * inside_h / (w * h):.0%} of it inside)"
        )
    return ""
