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
from collections import Counter
from pathlib import Path

from unilearn.data.manifest import summarize, write_manifest
from unilearn.data.native import READERS, DatasetLayoutError, read_native
from unilearn.data.worker_pool import add_workers_argument
from unilearn.launch.resources import add_cpu_launcher_arguments, submit_cpu_stage


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
    add_workers_argument(
        parser, "parallel workers for counting frames (threads; processes for VoxCeleb2 videos)"
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
