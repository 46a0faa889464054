"""`unilearn manifest DATASET --root DIR --out DIR`: read a dataset's native tree and write the
Parquet manifest `DIR/DATASET.parquet` (one row per clip per (fold, split), as the official split
files list them) and `DIR/DATASET.quarantine.parquet` (every row left out, with the reason naming
the file, the line and the problem). Rows in = kept + quarantined, always. Prints the counts per
fold/split and per reason, and any disagreement between the split files.

DATASET is one of dfew, mafw, ferv39k, affectnet (8 classes), affectnet7 (AffectNet-7: the same
tree, contempt quarantined) and voxceleb2 (unlabeled).
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path

import pandas as pd

from unilearn.atomic import write_parquet
from unilearn.data.native import (
    COLUMNS,
    READERS,
    DatasetLayoutError,
    NativeRead,
    read_native,
)
from unilearn.data.synth import read_summary
from unilearn.launch.cpu import add_cpu_launcher_arguments, submit_cpu_stage

_DTYPES = {
    "dataset": "string",
    "clip_id": "string",
    "path": "string",
    "media": "string",
    "label": "int16",
    "label_name": "string",
    "fold": "Int8",
    "split": "string",
    "n_frames": "int32",
    "source_file": "string",
}
_EXTRA_DTYPES = {
    "face_x": "int32",
    "face_y": "int32",
    "face_width": "int32",
    "face_height": "int32",
    "valence": "float32",
    "face_cropped": "boolean",
    "arousal": "float32",
    "reason_code": "string",
    "reason": "string",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dataset", choices=sorted(READERS), help="which dataset's native tree to read"
    )
    parser.add_argument(
        "--root", required=True, type=Path, help="the dataset's own top folder (e.g. .../DFEW)"
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="directory for DATASET.parquet and DATASET.quarantine.parquet",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=len(os.sched_getaffinity(0)),  # the CPUs this job may use (Slurm), not the node's
        help="parallel workers for counting frames (threads; processes for VoxCeleb2 videos)",
    )
    parser.add_argument(
        "--no-frame-count",
        action="store_true",
        help="VoxCeleb2: do not open the videos (n_frames -1; unreadable files surface in preprocess)",
    )
    parser.add_argument(
        "--zero-based-labels",
        action="store_true",
        help="DFEW: the split files number the classes 0-6 (some redistributed copies); read "
        "each label as label + 1. Without it such files are refused",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_cpu_launcher_arguments(parser)


def to_frame(rows: list[dict], quarantine: bool = False) -> pd.DataFrame:
    """Rows as a DataFrame with the manifest dtypes (an empty list still has every column)."""
    columns = list(COLUMNS)
    extra = [c for c in _EXTRA_DTYPES if any(c in r for r in rows[:1000])] if rows else []
    if quarantine:
        extra = [c for c in extra if c not in ("reason_code", "reason")] + ["reason_code", "reason"]
    df = pd.DataFrame(rows, columns=columns + extra)
    for col in columns + extra:
        dtype = _DTYPES.get(col) or _EXTRA_DTYPES[col]
        if dtype in ("int16", "int32") and df[col].isna().any():
            df[col] = df[col].fillna(-1)
        df[col] = df[col].astype(dtype)
    return df


def write_manifest(result: NativeRead, out: str | Path) -> tuple[Path, Path]:
    """Write the manifest and its quarantine for `result`; returns both paths."""
    mark_synthetic_face_crops(result, result.root)
    out = Path(out)
    manifest, quarantine = (
        out / f"{result.dataset}.parquet",
        out / f"{result.dataset}.quarantine.parquet",
    )
    write_parquet(to_frame(result.rows), manifest)
    write_parquet(to_frame(result.quarantine, quarantine=True), quarantine)
    return manifest, quarantine


def mark_synthetic_face_crops(result: NativeRead, root: str | Path) -> None:
    """The bundled synthetic trees are face crops in every dataset (their MAFW too, unlike the
    real one): say so per row (`face_cropped`), so preprocess resizes them as before."""
    summary = read_summary(root)
    if summary and summary.get("synthetic"):
        for row in result.rows:
            row["face_cropped"] = True


def summarize(result: NativeRead) -> str:
    """Counts per fold/split and per quarantine reason, and the split-file findings."""
    lines = [
        f"{result.dataset}: {result.rows_in} rows in = {len(result.rows)} kept + {len(result.quarantine)} quarantined (root {result.root})"
    ]
    per_split = Counter((r["fold"], r["split"]) for r in result.rows)
    for (fold, split), n in sorted(
        per_split.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1] != "train")
    ):
        where = f"fold {fold} {split}" if fold is not None else split
        lines.append(f"  {where:<14} {n:>8} rows")
    per_reason = Counter(q["reason_code"] for q in result.quarantine)
    for code, n in per_reason.most_common():
        example = next(q["reason"] for q in result.quarantine if q["reason_code"] == code)
        lines.append(f"  quarantined {code:<18} {n:>6}  e.g. {example}")
    for f in result.findings:
        lines.append(f"  SPLIT FILES DISAGREE [{f.code}]: {f.message}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    rc = submit_cpu_stage(args)
    if rc is not None:
        return rc
    # a tree that cannot be read raises DatasetLayoutError / SplitFileError: exit 2 (unilearn.cli)
    result = read_native(
        args.dataset,
        args.root,
        workers=args.workers,
        progress=not args.no_progress,
        count_frames=not args.no_frame_count,
        zero_based_labels=args.zero_based_labels,
    )
    manifest, quarantine = write_manifest(result, args.out)
    print(summarize(result))
    print(f"wrote {manifest} and {quarantine}")
    if not result.rows:
        top = Counter(q["reason_code"] for q in result.quarantine).most_common(1)[0][0]
        example = next(q["reason"] for q in result.quarantine if q["reason_code"] == top)
        raise DatasetLayoutError(
            f"{args.dataset}: 0 of {result.rows_in} rows kept under {result.root}: every row was "
            f"quarantined (most often {top}, e.g. {example}); see {quarantine}"
        )
    return 0
