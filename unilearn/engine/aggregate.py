"""`unilearn aggregate`: pool the per-clip predictions of all test folds and compute UAR/WAR once
on the pool (the DFEW and MAFW 5-fold protocol), plus the confusion matrix, -> JSON.

Per-fold numbers are reported beside the pooled ones for information only; the paper's numbers
are the pooled ones. The workflow pools the last epoch's predictions (`pred-<test>.parquet`) and
the best epoch's (`pred-<test>.best.parquet`) separately. Test clips that could not be read (the
`.quarantine.parquet` beside each predictions file) are counted, never scored.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from unilearn.engine.metrics import classification_metrics
from unilearn.errors import InputError, read_parquet

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


def aggregate(paths: list[Path], expect_folds: int | None = None) -> dict:
    """Pooled UAR/WAR + confusion matrix of the given prediction files."""
    from unilearn.catalogue import get_label_set

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
    per_fold = {}
    for fold, df in pool.groupby("fold", dropna=True):
        m = classification_metrics(df["label"], df["pred"], len(classes), classes)
        per_fold[str(int(fold))] = {"uar": m["uar"], "war": m["war"], "n": m["n"]}
    unreadable = 0
    for path in paths:
        quarantine = path.with_name(path.name.removesuffix(".parquet") + ".quarantine.parquet")
        if quarantine.is_file():
            unreadable += len(pd.read_parquet(quarantine, columns=["clip_id"]))
    uars = [m["uar"] for m in per_fold.values()]
    wars = [m["war"] for m in per_fold.values()]
    return {
        "dataset": dataset,
        "config_hash": str(pool["config_hash"].iloc[0]),
        "experiment": str(pool["experiment"].iloc[0]),
        "head": str(pool["head"].iloc[0]),
        "folds": folds,
        "pooled": True,
        **pooled,
        "n_unreadable": unreadable,
        "n_clips": pooled["n"] + unreadable,
        "per_fold": per_fold,
        "per_fold_mean": {"uar": float(np.mean(uars)), "war": float(np.mean(wars))}
        if uars
        else None,
        "inputs": [str(p) for p in paths],
    }


def main(args: argparse.Namespace) -> int:
    from unilearn.atomic import write_text

    result = aggregate(list(args.predictions), args.expect_folds)
    write_text(args.out, json.dumps(result, indent=2) + "\n")
    if args.config:
        from unilearn.config import load_config
        from unilearn.engine.wandb_log import log_pooled
        from unilearn.report.layout import parse_target

        train = parse_target(Path(result["inputs"][0]).parent.name)[0]
        log_pooled(load_config(args.config), result, args.run or result["experiment"], train,
                   mode=args.wandb, run_dir=args.out.parent / f".wandb-{args.out.stem}")  # fmt: skip
    print(
        f"{result['dataset']}: UAR {100 * result['uar']:.2f}  WAR {100 * result['war']:.2f}  "
        f"(pooled over {result['n']} clips, folds {result['folds'] or '-'}) -> {args.out}"
    )
    return 0
