"""Scoring a fine-tuned model on one test split with the paper's 2-clip protocol (two clips
uniformly sampled per video, softmax scores averaged), and the files the scores go to. The
fine-tuning job calls `test_model` and `write_predictions` on the model it holds (every
`finetune.eval_every` epochs and after the last); `unilearn evaluate` calls them on a checkpoint.

Writes, beside each other:
  PRED.parquet             one row per clip scored, each for its own clip: dataset, experiment,
                           head, clip_id, fold, split, label, pred, scores (list<float>),
                           config_hash
  PRED.quarantine.parquet  the test clips whose store record could not be read, with the
                           reason (never replaced by another clip)
  PRED.metrics.json        UAR / WAR / per-class recall / confusion of this fold; n_clips (test
                           split), n (scored), n_unreadable (quarantined)
  PRED.expert_usage.json   tokens routed to each expert of each MoAE layer (Figure 4a)
  PRED.centres.parquet     mean pooled feature per class (class centres, Figure 4b)
AffectNet-7 is tested with the SFER head; DFER datasets with the DFER head.

What a fine-tuning or a test runs on: a dataset and, for a cross-validated one, a fold
(`check_fold`); the test sets of a fine-tuning run (`TestSet`, `test_sets`, `default_tests`,
`check_heads`); the head that scores a test set (`head_for`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from unilearn.atomic import write_parquet, write_text
from unilearn.catalogue import FOLDS
from unilearn.data.loaders import build_eval_loader
from unilearn.data.transforms import normalize
from unilearn.engine import distributed as D
from unilearn.engine.aggregate import classification_metrics
from unilearn.engine.wandb_log import (
    group_and_name,
    log_evaluation,
    run_for,
    run_identity,
)
from unilearn.layout import (
    CENTRES,
    EXPERT_USAGE,
    METRICS,
    QUARANTINE,
    sidecar_path,
    target_name,
    tests_of,
    wandb_dir_beside,
)
from unilearn.models import expert_usage, reset_expert_usage, whole_groups

log = logging.getLogger(__name__)


# -- what is tested -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TestSet:
    dataset: str
    fold: int | None  # the run's fold where the test set is its own cross-validated dataset


def check_fold(dataset: str, fold: int | None) -> None:
    """A cross-validated dataset (DFEW, MAFW) needs `--fold 1..5`; the others refuse one."""
    if FOLDS.get(dataset):
        if fold not in FOLDS[dataset]:
            raise SystemExit(
                f"--dataset {dataset} is evaluated by 5-fold cross-validation: give --fold 1..5"
            )
    elif fold is not None:
        raise SystemExit(f"--dataset {dataset} has one official split: do not give --fold")


def head_for(dataset: str) -> str:
    """AffectNet-7 is scored with the SFER head, the DFER datasets with the DFER head."""
    return "sfer" if dataset == "affectnet7" else "dfer"


def default_tests(cfg, experiment: str, dataset: str) -> list[str]:
    """The test sets the workflow asks of a run (`unilearn.layout.tests_of`)."""
    if experiment not in cfg.experiments:
        return [dataset]  # resolve_experiment names the problem
    return tests_of(dataset, cfg.experiments[experiment].tasks)


def test_sets(dataset: str, fold: int | None, tests: Sequence[str]) -> list[TestSet]:
    """`--test` names as test sets: the run's own dataset at its fold, another one unfolded."""
    out = []
    for test in tests:
        if test == dataset:
            out.append(TestSet(test, fold))
        elif FOLDS.get(test):
            raise SystemExit(
                f"--test {test}: a {dataset} run is tested on {test} only when it is "
                f"fine-tuned on {test} (its folds are {test}'s)"
            )
        else:
            out.append(TestSet(test, None))
    return out


def check_heads(tests: Sequence[TestSet], experiment) -> None:
    """The fine-tuned (resolved) `experiment` has the head that scores each test set."""
    for test in tests:
        head = head_for(test.dataset)
        if head not in experiment.labels:
            raise SystemExit(
                f"--test {test.dataset}: experiment {experiment.name} has no {head.upper()} "
                "head to test it with"
            )


# -- the test -----------------------------------------------------------------------------------


def test_loader(cfg, store: Path, dataset: str, fold: int | None, meta: dict, info: D.DistInfo,
                holdout=None, placement_seed: int | None = None):  # fmt: skip
    """The 2-clip test loader of (dataset, fold) at the model's input (`meta`: num_frames,
    input_size, frame_stride as the fine-tuning recorded them); rank r of W gets rows r::W.
    `holdout`: the validation split of the training rows instead of the test split;
    `placement_seed`: one clip per video at an epoch's random position (`set_epoch`)."""
    return build_eval_loader(
        store, dataset, fold=fold, split="test" if holdout is None else "train",
        task=head_for(dataset), holdout=holdout, placement_seed=placement_seed,
        num_frames=meta["num_frames"], input_size=meta["input_size"],
        batch_size=whole_groups(cfg.evaluate.batch_size, cfg.model.moae.capacity_group),
        num_workers=cfg.data.num_workers,
        n_clips=cfg.evaluate.n_clips,
        frame_stride=meta.get("frame_stride", cfg.finetune.for_dataset(dataset).frame_stride),
        rank=info.rank,
        world_size=info.world_size,
    )  # fmt: skip


@dataclass
class TestResult:
    """One test of a model, gathered from every rank, in the order of the store table."""

    frame: pd.DataFrame  # the store rows of the clips scored
    labels: np.ndarray  # [N]
    scores: np.ndarray  # [N, K] mean softmax over the clips of a video
    features: np.ndarray  # [N, D] mean pooled feature over the clips
    usage: dict[int, torch.Tensor]  # MoAE block -> tokens routed to each expert
    unreadable: pd.DataFrame  # store rows of the clips that could not be read, + "reason"
    n_clips: int  # rows of the test split (scored + unreadable)


def test_model(
    model: torch.nn.Module,
    loader,
    head: str,
    info: D.DistInfo,
    dtype: torch.dtype | None,
    progress: bool,
) -> TestResult:
    """Score every clip of `loader` (sharded over ranks); every rank gets the whole result.
    Leaves the model in eval mode."""
    model.eval()
    rows, labels, scores, features, bad = predict(model, loader, head, info, dtype, progress)
    usage = {b: D.all_reduce_sum(c, info) for b, c in sorted(expert_usage(model).items())}
    gathered = D.all_gather_objects((rows, labels, scores, features, bad), info)
    rows, labels, scores, features = (
        np.concatenate([g[i] for g in gathered if len(g[i])] or [gathered[0][i]]) for i in range(4)
    )
    order = np.argsort(rows, kind="stable")
    table = loader.dataset.table
    bad_rows = [r for g in gathered for r, _ in g[4]]
    unreadable = table.iloc[bad_rows].assign(reason=[why for g in gathered for _, why in g[4]])
    unreadable = unreadable.sort_index().reset_index(drop=True)
    return TestResult(table.iloc[rows[order]].reset_index(drop=True), labels[order],
                      scores[order], features[order], usage, unreadable, len(table))  # fmt: skip


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    loader,
    head: str,
    info: D.DistInfo,
    dtype: torch.dtype | None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[tuple[int, str]]]:
    """(row, label, mean softmax over clips [N, K], mean pooled feature over clips [N, D],
    [(row, reason)] of the clips that could not be read)."""
    reset_expert_usage(model)
    rows, labels, scores, feats, bad = [], [], [], [], []
    for batch in tqdm(loader, desc=f"evaluate ({head})", unit="batch",
                      disable=not (progress and info.is_main), dynamic_ncols=True):  # fmt: skip
        unreadable = batch.get("unreadable")
        if unreadable is not None and len(unreadable["reason"]):
            bad += zip(unreadable["row"].tolist(), unreadable["reason"])
        if not len(batch["row"]):
            continue
        x = batch["x"].to(info.device, non_blocking=True)
        if x.ndim == 5:  # one clip per sample (images)
            x = x.unsqueeze(1)
        b, n = x.shape[:2]
        x = normalize(x.transpose(0, 1).flatten(0, 1))  # view-major, as the authors' test list
        with torch.autocast(
            info.device.type, dtype=dtype or torch.float32, enabled=dtype is not None
        ):
            # one forward per view: MoAE capacity groups (model.moae.capacity_group) hold
            # consecutive videos of one view, whatever the batch size
            f = torch.cat([model.forward_features(view) for view in x.split(b)])
            logits = model.forward_head(f, task=head)
        # the softmax scores of the clips averaged (the paper's 2-clip test)
        scores.append(logits.float().softmax(-1).view(n, b, -1).mean(0).cpu())
        feats.append(f.float().view(n, b, -1).mean(0).cpu())
        rows.append(batch["row"].cpu())
        labels.append(batch["y"].cpu())
    if not rows:
        empty = np.zeros((0,), dtype=np.int64)
        return empty, empty, np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32), bad
    return (
        torch.cat(rows).numpy(),
        torch.cat(labels).numpy(),
        torch.cat(scores).numpy(),
        torch.cat(feats).numpy(),
        bad,
    )


def class_centres(features: np.ndarray, labels: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """Mean feature of each class (Figure 4b compares them across a DFER and the SFER dataset)."""
    out = []
    for k, name in enumerate(classes):
        members = features[labels == k]
        centre = members.mean(0) if len(members) else np.full(features.shape[1], np.nan)
        out.append({"class_id": k, "class_name": name, "n": int(len(members)),
                    "centre": centre.astype(np.float32).tolist()})  # fmt: skip
    return pd.DataFrame(out)


def test_metrics(result: TestResult, classes: list[str]) -> dict[str, Any]:
    """UAR / WAR / per-class recall / confusion of the clips scored, and how many clips of the
    test split that covers (n_clips = n + n_unreadable)."""
    if len(result.scores) and result.scores.shape[1] != len(classes):
        raise RuntimeError(f"{result.scores.shape[1]} scores per clip for {len(classes)} classes")
    preds = result.scores.argmax(1) if len(result.scores) else np.zeros(0, np.int64)
    metrics = classification_metrics(result.labels, preds, len(classes), classes)
    return {**metrics, "n_clips": result.n_clips, "n_unreadable": len(result.unreadable)}


class TestSetIncomplete(RuntimeError):
    """A test split lost all its clips, or more than `evaluate.max_unreadable`: no number of it
    may reach a table (a failed run, exit status 1)."""


def _unreadable_list(bad: pd.DataFrame, limit: int = 20) -> str:
    """`clip 00003 (dfew/shard-00000.ulc:1234): reason; ...` (the first `limit`)."""
    named = [f"clip {c} ({k}): {r}" for c, k, r in
             zip(bad["clip_id"].astype(str), bad["store_key"].astype(str), bad["reason"].astype(str))]  # fmt: skip
    more = f"; and {len(named) - limit} more" if len(named) > limit else ""
    return "; ".join(named[:limit]) + more


def check_test_set(result: TestResult, dataset: str, fold: int | None, max_unreadable: int,
                   quarantine: Path | None = None) -> None:  # fmt: skip
    """Fail (`TestSetIncomplete`) when no test clip could be read, naming the store shards that
    hold them, or when more than `max_unreadable` could not; within the limit, warn. Every
    unreadable clip is named by clip id and store key (and `quarantine`, if written, lists
    them too)."""
    bad, n = result.unreadable, result.n_clips
    where = f"{dataset}{'' if fold is None else f' fold {fold}'}"
    listed = f" (listed in {quarantine})" if quarantine is not None else ""
    if n == 0:
        raise TestSetIncomplete(f"{where}: the store table has no test clips: nothing to score")
    if not len(bad):
        return
    clips = _unreadable_list(bad)
    if len(bad) == n:
        shards = sorted({str(k).rpartition(":")[0] for k in bad["store_key"]})
        raise TestSetIncomplete(
            f"{where}: none of the {n} test clips could be read: the store shard"
            f"{'s' if len(shards) > 1 else ''} {', '.join(shards)} (under --store) "
            f"{'are' if len(shards) > 1 else 'is'} damaged; rebuild with `unilearn preprocess` "
            f"or check it with `unilearn doctor`{listed}. Unreadable: {clips}"
        )
    if len(bad) > max_unreadable:
        raise TestSetIncomplete(
            f"{where}: {len(bad)} of {n} test clips unreadable, more than "
            f"evaluate.max_unreadable={max_unreadable} allows (its numbers would come from an "
            f"incomplete test set){listed}. Unreadable: {clips}"
        )
    log.warning("%s: %d of %d test clips unreadable, left out of the metrics (n_unreadable in "
                "the metrics; evaluate.max_unreadable=%d): %s", where, len(bad), n,
                max_unreadable, clips)  # fmt: skip


def write_predictions(
    out: Path, result: TestResult, meta: dict[str, Any], dataset: str, fold: int | None
) -> dict[str, Any]:
    """Write PRED.parquet and its sidecars (see the module doc); returns the metrics."""
    head = head_for(dataset)
    classes = list(meta["labels"][head])
    frame, labels, scores = result.frame, result.labels, result.scores
    if not np.array_equal(frame["label"].to_numpy(), labels):
        raise RuntimeError(f"{dataset}: labels of the loader and the manifest rows disagree")
    metrics = test_metrics(result, classes)
    ident = {"dataset": dataset, "experiment": meta.get("experiment"), "head": head,
             "config_hash": meta.get("config_hash")}  # fmt: skip
    table = pd.DataFrame({
        "dataset": dataset,
        "experiment": ident["experiment"],
        "head": head,
        "clip_id": frame["clip_id"].astype(str).to_numpy(),
        "fold": pd.array([fold] * len(frame), dtype="Int8"),
        "split": frame["split"].astype(str).to_numpy() if "split" in frame else "test",
        "label": labels.astype(np.int64),
        "pred": scores.argmax(1).astype(np.int64) if len(scores) else np.zeros(0, np.int64),
        "scores": [row.astype(np.float32) for row in scores],
        "config_hash": ident["config_hash"],
    })  # fmt: skip
    write_parquet(table, out)
    bad = result.unreadable
    quarantine = pd.DataFrame({
        "dataset": dataset,
        "clip_id": bad["clip_id"].astype(str).to_numpy() if len(bad) else np.array([], str),
        "fold": pd.array([fold] * len(bad), dtype="Int8"),
        "label": bad["label"].astype(np.int64).to_numpy() if len(bad) else np.zeros(0, np.int64),
        "store_key": bad["store_key"].astype(str).to_numpy() if len(bad) else np.array([], str),
        "reason": bad["reason"].astype(str).to_numpy() if len(bad) else np.array([], str),
    })  # fmt: skip
    write_parquet(quarantine, sidecar_path(out, QUARANTINE))
    train = meta.get("train")
    metrics = {**ident, "fold": fold, "checkpoint_train": train, **metrics}
    write_text(sidecar_path(out, METRICS), json.dumps(metrics, indent=2) + "\n")
    layers = {str(b): c.tolist() for b, c in result.usage.items()}
    write_text(sidecar_path(out, EXPERT_USAGE),
               json.dumps({**ident, "fold": fold, "layers": layers}, indent=2) + "\n")  # fmt: skip
    features = result.features if len(result.features) else np.zeros((0, 1), np.float32)
    centres = class_centres(features, labels, classes).assign(**ident, fold=fold)
    write_parquet(centres, sidecar_path(out, CENTRES))
    return metrics


def log_test_run(
    cfg,
    out: Path,
    meta: dict,
    dataset: str,
    fold: int | None,
    metrics: dict,
    result: TestResult,
    wandb_mode: str | None,
) -> None:
    """One W&B run for a test by `unilearn evaluate`: UAR/WAR, per-class recall, confusion. A
    checkpoint whose meta names no `experiment` (an imported one: `--model`) is logged as
    experiment "imported", in group `<config name>/imported`."""
    experiment = meta.get("experiment") or "imported"
    layers = {str(b): c.tolist() for b, c in result.usage.items()}
    run_name = meta.get("run") or experiment
    identity = run_identity(run_name, experiment, meta.get("dataset") or dataset, fold,
                            meta.get("init")) | {"test_dataset": dataset}  # fmt: skip
    group, name = group_and_name(
        cfg.name, run_name, f"{target_name(meta.get('dataset') or dataset, fold)}-on-{dataset}"
    )
    wandb = run_for(cfg, job_type="evaluate", group=group, name=name,
                    run_dir=wandb_dir_beside(out), is_main=True, mode=wandb_mode,
                    identity=identity)  # fmt: skip
    log_evaluation(wandb, metrics, usage=layers)
    wandb.finish()


def test_summary(metrics: dict[str, Any], usage: dict[int, torch.Tensor]) -> dict[str, float]:
    """What W&B records of one test: UAR, WAR, clip counts and each MoAE layer's expert shares."""
    summary = {"test/uar": metrics["uar"], "test/war": metrics["war"], "test/n": metrics["n"],
               "test/n_unreadable": metrics["n_unreadable"]}  # fmt: skip
    for block, counts in usage.items():
        counts = counts.tolist()
        total = max(sum(counts), 1)
        summary.update({f"experts/block{block}/e{i}": c / total for i, c in enumerate(counts)})
    return summary
