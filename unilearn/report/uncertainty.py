"""The uncertainty of a table cell: the bootstrap interval of its pooled UAR/WAR, and the paired
comparison of a row with its reference row on the same test clips (`unilearn.report.bootstrap`
does the resampling).

Everything here takes lists of per-fold predictions (one DataFrame per test fold, as
`layout.predictions_for` lists the files), so a caller with several seeds of a cell calls it once
per seed; `compare_over_seeds` compares a row with its reference over all their seeds at once. A cell's interval is the one `unilearn aggregate` wrote into its metrics JSON; a metrics
file written before intervals existed gets it computed here, from the same predictions with the
same settings (the same numbers).

A paired comparison pairs the two rows' predictions clip by clip within each fold (fold and clip
id); it is computed on the clips both rows scored (`n_paired`: fewer than the test set only where
one of them lost clips it could not read).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from unilearn.report.bootstrap import paired_comparison, paired_over_seeds, pooled_interval

COLUMNS = ("clip_id", "fold", "label", "pred")
INTERVAL_KEYS = ("uar_lo", "uar_hi", "war_lo", "war_hi")


def read_fold_predictions(paths: Sequence[Path]) -> list[pd.DataFrame]:
    """One DataFrame (clip_id, fold, label, pred) per predictions file."""
    frames = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: predictions missing (written by `unilearn finetune`/`evaluate`); the "
                "tables pair rows clip by clip on them"
            )
        try:
            frame = pd.read_parquet(path, columns=list(COLUMNS))
        except Exception as e:  # pyarrow raises several types for a truncated or foreign file
            raise ValueError(f"{path}: not a readable predictions file ({e})") from None
        frames.append(frame)
    return frames


def _fold_key(frame: pd.DataFrame) -> pd.Series:
    return frame["fold"].astype("float64").fillna(-1).astype(np.int64)


def by_fold(frames: Sequence[pd.DataFrame]) -> list[tuple[np.ndarray, np.ndarray]]:
    """`(labels, preds)` of each test fold of the pooled predictions."""
    pool = pd.concat(frames, ignore_index=True)
    return [
        (df["label"].to_numpy(np.int64), df["pred"].to_numpy(np.int64))
        for _, df in pool.groupby(_fold_key(pool), sort=True)
    ]


def interval(frames: Sequence[pd.DataFrame], num_classes: int, bootstrap) -> dict[str, float]:
    """`{uar_lo, uar_hi, war_lo, war_hi}` (fractions) of one cell's pooled predictions."""
    return pooled_interval(by_fold(frames), num_classes, resamples=bootstrap.resamples,
                           confidence=bootstrap.confidence, seed=bootstrap.seed)  # fmt: skip


def cell_interval(metrics: dict[str, Any], paths: Sequence[Path], bootstrap) -> dict[str, float]:
    """A cell's interval (fractions): the one in its metrics JSON, else computed from the
    prediction files the metrics pooled (`paths`) with the same settings."""
    if all(metrics.get(k) is not None for k in INTERVAL_KEYS):
        return {k: float(metrics[k]) for k in INTERVAL_KEYS}
    from unilearn.catalogue import get_label_set

    k = get_label_set(metrics["dataset"]).num_classes
    return interval(read_fold_predictions(paths), k, bootstrap)


def _paired_frame(
    frames: Sequence[pd.DataFrame], reference: Sequence[pd.DataFrame], what: str
) -> pd.DataFrame:
    """fold, clip_id, label, pred, pred_ref of the clips both rows scored."""
    ours, theirs = (pd.concat(f, ignore_index=True) for f in (frames, reference))
    ours, theirs = (
        f.assign(fold=_fold_key(f), clip_id=f["clip_id"].astype(str)) for f in (ours, theirs)
    )
    both = ours.merge(theirs, on=["fold", "clip_id"], suffixes=("", "_ref"), validate="1:1")
    if both.empty:
        raise ValueError(f"{what}: no test clip in common with its reference row")
    wrong = both[both["label"] != both["label_ref"]]
    if not wrong.empty:
        row = wrong.iloc[0]
        raise ValueError(
            f"{what}: clip {row.clip_id!r} (fold {row.fold}) has label {row.label} here and "
            f"{row.label_ref} in its reference row: not the same test set"
        )
    return both[["fold", "clip_id", "label", "pred", "pred_ref"]]


def paired_folds(
    frames: Sequence[pd.DataFrame], reference: Sequence[pd.DataFrame], what: str
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """`(labels, preds, reference preds)` per fold, clip by clip (fold and clip id)."""
    both = _paired_frame(frames, reference, what)
    return [
        (df["label"].to_numpy(np.int64), df["pred"].to_numpy(np.int64),
         df["pred_ref"].to_numpy(np.int64))
        for _, df in both.groupby("fold", sort=True)
    ]  # fmt: skip


def compare(
    frames: Sequence[pd.DataFrame],
    reference: Sequence[pd.DataFrame],
    num_classes: int,
    bootstrap,
    what: str,
) -> dict[str, Any]:
    """This row minus its reference on the same clips: `diff_uar`, `diff_uar_lo`, `diff_uar_hi`,
    `p_uar`, the same for WAR (fractions), `n_paired` (`bootstrap.paired_comparison`)."""
    return paired_comparison(paired_folds(frames, reference, what), num_classes,
                             resamples=bootstrap.resamples, confidence=bootstrap.confidence,
                             seed=bootstrap.seed)  # fmt: skip


def compare_over_seeds(
    pairs: Sequence[tuple[Sequence[pd.DataFrame], Sequence[pd.DataFrame]]],
    num_classes: int,
    bootstrap,
    what: str,
) -> dict[str, Any]:
    """A row minus its reference over their seeds: `pairs` holds, per seed s, (the row's
    predictions, the reference's) of seed s. The mean over the seeds of the per-seed difference,
    with the two-level (clips, seeds) bootstrap interval and p-value of
    `bootstrap.paired_over_seeds`, on the clips every seed of both rows scored (`n_paired`)."""
    merged = None
    for s, (frames, reference) in enumerate(pairs):
        both = _paired_frame(frames, reference, what).rename(
            columns={"label": f"label_{s}", "pred": f"pred_{s}", "pred_ref": f"ref_{s}"}
        )
        merged = both if merged is None else merged.merge(both, on=["fold", "clip_id"])
    if merged is None or merged.empty:
        raise ValueError(f"{what}: no test clip that every seed of it and its reference scored")
    n = len(pairs)
    labels = merged[[f"label_{s}" for s in range(n)]].to_numpy(np.int64)
    if (labels != labels[:, :1]).any():
        raise ValueError(f"{what}: a clip's label differs between the seeds' test sets")
    merged = merged.assign(label=labels[:, 0])
    folds = [
        (df["label"].to_numpy(np.int64),
         df[[f"pred_{s}" for s in range(n)]].to_numpy(np.int64).T,
         df[[f"ref_{s}" for s in range(n)]].to_numpy(np.int64).T)
        for _, df in merged.groupby("fold", sort=True)
    ]  # fmt: skip
    return paired_over_seeds(folds, num_classes, resamples=bootstrap.resamples,
                             confidence=bootstrap.confidence, seed=bootstrap.seed)  # fmt: skip
