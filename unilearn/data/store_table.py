"""The rows of a store table (`STORE/DATASET.parquet`, written by `unilearn preprocess`) that one
(dataset, fold, split) selects: what the datasets and the config's dry run read.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from unilearn.catalogue import DATASETS, get_label_set
from unilearn.errors import InputError, read_parquet


def load_store_table(
    store: str | Path, dataset: str, fold: int | None = None, split: str | None = None
) -> pd.DataFrame:
    """Rows of `STORE/DATASET.parquet` for one fold and split, re-indexed 0..n-1.

    `affectnet7` reads `affectnet7.parquet` if preprocessing wrote one, else the table its clips
    come from (`unilearn.catalogue`'s `store_table`: the 8-class AffectNet) without the classes
    its label set leaves out (contempt: AffectNet-7's definition; ids 0-6 are shared).
    `fold` is required for datasets with folds (DFEW, MAFW) and must be None for the others.
    """
    store = Path(store)
    path = store / f"{dataset}.parquet"
    spec = DATASETS.get(dataset)
    if spec is not None and spec.store and not path.exists():
        path = store / f"{spec.store_table}.parquet"
        table = _read(path)
        classes = get_label_set(DATASETS[spec.store_table].label_set).classes
        left_out = [classes.index(c) for c in get_label_set(spec.label_set).excluded]
        table = table[~table["label"].isin(left_out)]
    else:
        table = _read(path)
    has_folds = "fold" in table.columns and table["fold"].notna().any()
    if has_folds:
        if fold is None:
            raise ValueError(
                f"{path}: {dataset} has folds {sorted(table['fold'].dropna().unique().tolist())}; pass fold"
            )
        table = table[table["fold"] == fold]
    elif fold is not None:
        raise ValueError(f"{path}: {dataset} has one official split; fold must be None, got {fold}")
    if split is not None:
        table = table[table["split"] == split]
    if table.empty:
        raise InputError(f"{path}: no rows for dataset={dataset} fold={fold} split={split}")
    return table.reset_index(drop=True)


def _read(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: store table missing; run `unilearn preprocess` for this dataset"
        )
    return read_parquet(path, "store table")
