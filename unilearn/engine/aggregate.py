"""`unilearn aggregate`: pool the per-clip predictions of all test folds and compute UAR/WAR once
on the pool (the DFEW and MAFW 5-fold protocol), plus the confusion matrix, -> JSON.

Per-fold numbers are reported beside the pooled ones for information only; the paper's numbers
are the pooled ones. The workflow pools the last epoch's predictions (`pred-<test>.parquet`) and
the best epoch's (`pred-<test>.best.parquet`) separately. Test clips that could not be read (the
`.quarantine.parquet` beside each predictions file) are counted per fold and summed
(`n_unreadable`; `n_clips` = scored + unreadable), never scored.

The pooled UAR/WAR carry a bootstrap interval (`uar_lo`, `uar_hi`, `war_lo`, `war_hi`: test
clips resampled within each fold, then pooled, `unilearn.report.bootstrap`; the config's
`report.bootstrap`, its defaults without `--config`), recorded with its settings (`bootstrap`).

UAR is the mean of per-class recall over the classes present in the labels (as sklearn's
`balanced_accuracy_score`); WAR is overall accuracy (recall weighted by class support):
`classification_metrics`, in numpy (no torch), which the test of each fold writes too
(`unilearn.engine.scoring`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from unilearn.errors import InputError, read_parquet
from unilearn.layout import QUARANTINE, sidecar_path

PREDICTION_COLUMNS = (
    "dataset",
    "clip_id",
    "fold",
    "split",
    "label",
    "pred",
    "scores",
    "config_hash",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "predictions",
        nargs="+",
        type=Path,
        metavar="PRED.parquet",
        help="per-clip predictions written by `unilearn finetune` or `unilearn evaluate` (one per fold)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="METRICS.json",
        help="pooled metrics (UAR, WAR, per-class recall, confusion matrix)",
    )
    parser.add_argument(
        "--expect-folds",
        type=int,
        default=None,
        metavar="N",
        help="fail unless exactly N distinct folds are pooled (5 for DFEW/MAFW)",
    )
    parser.add_argument("--config", action="append", type=Path, metavar="YAML",
                        help="the workflow's config (repeatable): with it, the pooled numbers are "
                        "also logged as one W&B run (see --run)")  # fmt: skip
    parser.add_argument("--run", metavar="EXPERIMENT[@SWEEP=VALUE]",
                        help="the run these predictions belong to (its W&B group); "
                        "default: their experiment")  # fmt: skip
    parser.add_argument("--wandb", choices=["offline", "online", "disabled"],
                        help="W&B mode (else the config's wandb.mode, else WANDB_MODE, else offline)")  # fmt: skip


def read_predictions(paths: list[Path]) -> pd.DataFrame:
    """Concatenate prediction files, checking they describe one dataset, one config and no clip
    twice within a fold."""
    frames = []
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: predictions file not found")
        df = read_parquet(path, "predictions file")
        missing = [c for c in PREDICTION_COLUMNS if c not in df.columns]
        if missing:
            raise InputError(
                f"{path}: missing columns {missing}; is it a `unilearn evaluate` output?"
            )
        if df.empty:
            raise InputError(f"{path}: no predictions")
        frames.append(df.assign(source=str(path)))
    pool = pd.concat(frames, ignore_index=True)
    for column in ("dataset", "experiment", "head", "config_hash"):
        values = pool.groupby(column)["source"].first()
        if len(values) > 1:
            detail = ", ".join(f"{v!r} in {src}" for v, src in values.items())
            raise InputError(f"predictions mix several values of {column}: {detail}")
    dup = pool[pool.duplicated(["fold", "clip_id"], keep=False)]
    if not dup.empty:
        row = dup.iloc[0]
        raise InputError(
            f"clip {row.clip_id!r} of fold {row.fold} is predicted more than once "
            f"({', '.join(sorted(set(dup.source)))})"
        )
    return pool


def aggregate(paths: list[Path], expect_folds: int | None = None, bootstrap=None) -> dict:
    """Pooled UAR/WAR + confusion matrix of the given prediction files, with the bootstrap
    interval of `bootstrap` (a `report.bootstrap` section; None: its defaults)."""
    from unilearn.catalogue import get_label_set
    from unilearn.config import BootstrapConfig
    from unilearn.report.bootstrap import pooled_interval
    from unilearn.report.uncertainty import by_fold

    bootstrap = bootstrap or BootstrapConfig()

    pool = read_predictions(paths)
    dataset = str(pool["dataset"].iloc[0])
    classes = get_label_set(dataset).classes
    folds = sorted(int(f) for f in pool["fold"].dropna().unique())
    if expect_folds is not None and len(folds) != expect_folds:
        raise InputError(f"{dataset}: expected {expect_folds} folds, got {folds or 'none'}")
    outside = pool[
        ~pool["label"].between(0, len(classes) - 1) | ~pool["pred"].between(0, len(classes) - 1)
    ]
    if not outside.empty:
        bad = outside.iloc[0]
        raise InputError(
            f"{bad.source}: clip {bad.clip_id!r} has label {int(bad.label)} / prediction "
            f"{int(bad.pred)}, outside the {len(classes)} {dataset} classes 0-{len(classes) - 1} "
            f"({len(outside)} such row(s) in {', '.join(sorted(set(outside.source)))})"
        )
    pooled = classification_metrics(pool["label"], pool["pred"], len(classes), classes)
    unreadable = _unreadable_per_fold(paths, pool)
    per_fold = {}
    for fold, df in pool.groupby("fold", dropna=True):
        m = classification_metrics(df["label"], df["pred"], len(classes), classes)
        lost = unreadable.get(int(fold), 0)
        per_fold[str(int(fold))] = {"uar": m["uar"], "war": m["war"], "n": m["n"],
                                    "n_unreadable": lost, "n_clips": m["n"] + lost}  # fmt: skip
    uars = [m["uar"] for m in per_fold.values()]
    wars = [m["war"] for m in per_fold.values()]
    # one (labels, preds) per test fold; a single-split dataset (no fold) is one
    interval = pooled_interval(by_fold([pool]), len(classes), resamples=bootstrap.resamples,
                               confidence=bootstrap.confidence, seed=bootstrap.seed)  # fmt: skip
    n_unreadable = sum(unreadable.values())
    return {
        "dataset": dataset,
        "config_hash": str(pool["config_hash"].iloc[0]),
        "experiment": str(pool["experiment"].iloc[0]),
        "head": str(pool["head"].iloc[0]),
        "folds": folds,
        "pooled": True,
        **pooled,
        **interval,
        "bootstrap": {
            "method": "percentile, clips resampled within each fold, then pooled",
            **bootstrap.model_dump(),
        },  # fmt: skip
        "n_unreadable": n_unreadable,
        "n_clips": pooled["n"] + n_unreadable,
        "per_fold": per_fold,
        "per_fold_mean": {"uar": float(np.mean(uars)), "war": float(np.mean(wars))}
        if uars
        else None,
        "inputs": [str(p) for p in paths],
    }


def _unreadable_per_fold(paths: list[Path], pool: pd.DataFrame) -> dict[int, int]:
    """Unreadable test clips per fold (-1: a single-split dataset), from the quarantine file
    beside each predictions file; its fold is that of the predictions it sits beside."""
    lost: dict[int, int] = {}
    for path in paths:
        quarantine = sidecar_path(path, QUARANTINE)
        if not quarantine.is_file():
            continue
        n = len(read_parquet(quarantine, "quarantine file"))
        folds = pool.loc[pool["source"] == str(path), "fold"].dropna().unique()
        fold = int(folds[0]) if len(folds) else -1
        lost[fold] = lost.get(fold, 0) + n
    return lost


def main(args: argparse.Namespace) -> int:
    from unilearn.atomic import write_text

    cfg = None
    if args.config:
        from unilearn.config import load_config

        cfg = load_config(args.config)
    bootstrap = cfg.report.bootstrap if cfg is not None else None
    result = aggregate(list(args.predictions), args.expect_folds, bootstrap)
    write_text(args.out, json.dumps(result, indent=2) + "\n")
    if cfg is not None:
        from unilearn.engine.wandb_log import log_pooled
        from unilearn.layout import parse_target, wandb_dir_beside

        train = parse_target(Path(result["inputs"][0]).parent.name)[0]
        log_pooled(cfg, result, args.run or result["experiment"], train, mode=args.wandb,
                   run_dir=wandb_dir_beside(args.out))  # fmt: skip
    print(
        f"{result['dataset']}: UAR {100 * result['uar']:.2f}  WAR {100 * result['war']:.2f}  "
        f"(pooled over {result['n']} clips, folds {result['folds'] or '-'}) -> {args.out}"
    )
    return 0


# -- UAR, WAR and the confusion matrix -----------------------------------------------------------


def confusion_matrix(labels: Sequence[int], preds: Sequence[int], num_classes: int) -> np.ndarray:
    """Counts `[true, predicted]` as int64 `[num_classes, num_classes]`."""
    labels = np.asarray(labels, dtype=np.int64)
    preds = np.asarray(preds, dtype=np.int64)
    if labels.shape != preds.shape:
        raise ValueError(f"{labels.shape[0]} labels but {preds.shape[0]} predictions")
    for name, values in (("label", labels), ("prediction", preds)):
        bad = values[(values < 0) | (values >= num_classes)]
        if bad.size:
            raise ValueError(f"{name} {int(bad[0])} outside 0..{num_classes - 1}")
    flat = np.bincount(labels * num_classes + preds, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def per_class_recall(conf: np.ndarray) -> np.ndarray:
    """Recall of each class; NaN for a class without test samples."""
    support = conf.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(conf) / np.maximum(support, 1), np.nan)


def uar(conf: np.ndarray) -> float:
    """Unweighted average recall: mean recall over the classes that have test samples (NaN when
    none has: an empty test set)."""
    recall = per_class_recall(conf)
    seen = recall[~np.isnan(recall)]
    return float(seen.mean()) if len(seen) else float("nan")


def war(conf: np.ndarray) -> float:
    """Weighted average recall = accuracy."""
    return float(np.trace(conf) / max(conf.sum(), 1))


def classification_metrics(
    labels: Sequence[int],
    preds: Sequence[int],
    num_classes: int,
    class_names: Sequence[str] | None = None,
) -> dict:
    """UAR, WAR, per-class recall and the confusion matrix as a JSON-ready dict."""
    conf = confusion_matrix(labels, preds, num_classes)
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    recall = per_class_recall(conf)
    return {
        "uar": uar(conf),
        "war": war(conf),
        "n": int(conf.sum()),
        "class_names": names,
        "per_class_recall": {n: (None if np.isnan(r) else float(r)) for n, r in zip(names, recall)},
        "support": {n: int(s) for n, s in zip(names, conf.sum(axis=1))},
        "confusion": conf.tolist(),
    }
