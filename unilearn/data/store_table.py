"""The rows of a store table (`STORE/DATASET.parquet`, written by `unilearn preprocess`) that one
(dataset, fold, split) selects: what the datasets and the config's dry run read.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from unilearn.catalogue import get_label_set
from unilearn.errors import InputError, read_parquet


def load_store_table(
    store: str | Path, dataset: str, fold: int | None = None, split: str | None = None
) -> pd.DataFrame:
    """Rows of `STORE/DATASET.parquet` for one fold and split, re-indexed 0..n-1.

    `affectnet7` reads `affectnet7.parquet` if preprocessing wrote one, else the 8-class AffectNet
    table without its contempt rows (AffectNet-7's definition; ids 0-6 are shared).
    `fold` is required for datasets with folds (DFEW, MAFW) and must be None for the others.
    """
    store = Path(store)
    path = store / f"{dataset}.parquet"
    if dataset == "affectnet7" and not path.exists():
        path = store / "affectnet.parquet"
        table = _read(path)
        table = table[table["label"] != get_label_set("affectnet").classes.index("contempt")]
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
