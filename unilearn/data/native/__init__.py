"""Native dataset readers: a dataset tree exactly as distributed -> manifest rows + quarantine rows
+ split-file findings. `unilearn manifest` and `unilearn doctor` both read through `read_native`."""

from __future__ import annotations

from pathlib import Path

from unilearn.data.native import affectnet, dfew, ferv39k, mafw, voxceleb2
from unilearn.data.native.common import (
    COLUMNS,
    REASONS,
    DatasetLayoutError,
    Finding,
    NativeRead,
    SplitFileError,
    no_rows_error,
)
from unilearn.data.worker_pool import job_cpus

# Manifest names -> reader and its options. `affectnet7` is AffectNet read with the 7-class set.
READERS = {
    "dfew": (dfew.read, {}),
    "mafw": (mafw.read, {}),
    "ferv39k": (ferv39k.read, {}),
    "affectnet": (affectnet.read, {"label_set": "affectnet"}),
    "affectnet7": (affectnet.read, {"label_set": "affectnet7"}),
    "voxceleb2": (voxceleb2.read, {}),
}


def read_native(
    dataset: str, root: str | Path, *, workers: int | None = None, **options
) -> NativeRead:
    """Read `dataset` (a key of READERS) from its native tree at `root`, with `workers` threads
    (processes for VoxCeleb2's videos; 0 or 1 = in this process; by default `job_cpus()`, as the
    data stages' `--workers`)."""
    if dataset not in READERS:
        raise KeyError(f"unknown dataset {dataset!r}; expected one of {sorted(READERS)}")
    reader, fixed = READERS[dataset]
    workers = job_cpus() if workers is None else workers
    result = reader(root, workers=workers, **{**options, **fixed})
    if not result.rows_in:
        raise no_rows_error(dataset, result.root, "the split/annotation files list no rows")
    return result


__all__ = [
    "COLUMNS",
    "READERS",
    "REASONS",
    "DatasetLayoutError",
    "Finding",
    "NativeRead",
    "SplitFileError",
    "read_native",
]
