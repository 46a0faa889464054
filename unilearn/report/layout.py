"""Where the workflow keeps each run's files, and how a run is named (one place for both the
Snakefile's path arithmetic and the tables/figures that read the results).

Under the runs root (`runs/<config name>/`):

    pretrain/<mode>/checkpoint.pt
    finetune/<run>/<target>/checkpoint.pt          target: ferv39k | affectnet7 | dfew-fold3 ...
    finetune/<run>/<target>/checkpoint-best.pt     the epoch picked on the test split (authors' rule)
    finetune/<run>/<target>/checkpoint-val.pt      the epoch picked on a validation split (if on)
    finetune/<run>/<target>/pred-<test>.parquet    (+ .metrics.json, .expert_usage.json, .centres.parquet,
                                                   .quarantine.parquet): the last epoch's weights
    finetune/<run>/<target>/pred-<test>.best.parquet  (+ the same sidecars): the best epoch's
    finetune/<run>/<target>/pred-<test>.val.parquet   (+ the same sidecars): the validation pick's
    metrics/<run>/<train>/<test>.json              folds pooled by `unilearn aggregate` (last epoch)
    metrics/<run>/<train>/<test>.best.json         the same for the best epoch
    metrics/<run>/<train>/<test>.val.json          the same for the validation pick (if on)

The fine-tuning job writes every prediction file of its run (`tests_of`): its own test split,
and for a joint model fine-tuned on a single-split DFER dataset also AffectNet-7 (Table 4,
Figure 4).

A run is an experiment of the config, or one point of a sweep on top of it:
`unilearn`, `unilearn@n_experts=4`, `unilearn@sfer_proportion=0.25` (its name and the overrides
it adds: `unilearn.report.runs`).
"""

from __future__ import annotations

from pathlib import Path

from unilearn.catalogue import FOLDS, SFER_DATASETS

# `unilearn.engine.wandb_log` names W&B runs with `layout.parse_run`: kept importable from here.
from unilearn.report.runs import parse_run  # noqa: F401

# The SFER test set of a joint model.
SFER_TEST = SFER_DATASETS[0]


# Which weights of a fine-tuning a prediction comes from: the last epoch, the epoch with the best
# WAR on the test split (what the authors report: by their rule, one random clip per video with
# the router's noise, `finetune.selection.best: authors`), or the epoch with the best WAR on a
# validation split held out of the training fold (`finetune.selection.validation`), and how each
# is labelled in the tables. `weights_of(cfg)`: those a config's fine-tunings write.
WEIGHTS = ("last", "best", "val")
WEIGHTS_LABEL = {
    "last": "last epoch",
    "best": "best epoch on the test split (as the authors report)",
    "val": "best epoch on a validation split",
}
# `finetune.selection.best: test` (our former rule: the epoch of the best 2-clip test WAR)
BEST_ON_TEST_LABEL = "best epoch on the 2-clip test split (ours, not the authors' rule)"
_WEIGHTS_SUFFIX = {"last": "", "best": ".best", "val": ".val"}


def weights_of(cfg) -> tuple[str, ...]:
    """The weights a config's fine-tuning jobs write predictions of: `val` only with a
    validation split (`finetune.selection.validation`)."""
    return WEIGHTS if cfg.finetune.selection.holdout is not None else WEIGHTS[:2]


def weights_label(weights: str, cfg) -> str:
    """How the tables of `cfg` label `weights` (the `best` label names the selection rule)."""
    if weights == "best" and cfg.finetune.selection.best == "test":
        return BEST_ON_TEST_LABEL
    return WEIGHTS_LABEL[weights]


def targets(train: str) -> list[str]:
    """Fine-tuning runs of one dataset: one per fold (DFEW, MAFW) or the official split."""
    return [f"{train}-fold{k}" for k in FOLDS[train]] or [train]


def parse_target(target: str) -> tuple[str, int | None]:
    """`dfew-fold3` -> ("dfew", 3); `ferv39k` -> ("ferv39k", None)."""
    dataset, sep, fold = target.partition("-fold")
    return (dataset, int(fold)) if sep else (dataset, None)


def pretrain_dir(runs: str | Path, mode: str) -> Path:
    return Path(runs) / "pretrain" / mode


def finetune_dir(runs: str | Path, run: str, target: str) -> Path:
    return Path(runs) / "finetune" / run / target


def tests_of(target: str, tasks) -> list[str]:
    """The test sets a fine-tuning run on `target` is tested on, its own first (that one also
    picks the best epoch): a joint model (SFER and DFER heads) fine-tuned on a single-split DFER
    dataset is also tested on AffectNet-7."""
    dataset, _ = parse_target(target)
    tests = [dataset]
    if {"sfer", "dfer"} <= set(tasks) and not FOLDS[dataset] and dataset != SFER_TEST:
        tests.append(SFER_TEST)
    return tests


def prediction_name(test: str, weights: str = "last") -> str:
    """`pred-dfew.parquet` (last epoch), `pred-dfew.best.parquet` (best epoch),
    `pred-dfew.val.parquet` (the validation split's pick)."""
    return f"pred-{test}{_WEIGHTS_SUFFIX[weights]}.parquet"


def prediction_path(
    runs: str | Path, run: str, target: str, test: str, weights: str = "last"
) -> Path:
    return finetune_dir(runs, run, target) / prediction_name(test, weights)


PREDICTION_SIDECARS = (".metrics.json", ".expert_usage.json", ".centres.parquet")


def prediction_sidecar(prediction: Path, suffix: str) -> Path:
    """`pred-x.parquet` -> `pred-x.expert_usage.json` (what the test writes beside)."""
    return prediction.with_name(prediction.name.removesuffix(".parquet") + suffix)


def metrics_path(runs: str | Path, run: str, train: str, test: str, weights: str = "last") -> Path:
    return Path(runs) / "metrics" / run / train / f"{test}{_WEIGHTS_SUFFIX[weights]}.json"


def pooled_wandb_dir(metrics: str | Path) -> Path:
    """The W&B run directory of a pooled metrics file (`metrics/<run>/<train>/.wandb-<test>`):
    `unilearn aggregate` logs the pooled numbers there and `unilearn tables` adds the paired
    comparison to the same run (its id is kept in that directory)."""
    metrics = Path(metrics)
    return metrics.parent / f".wandb-{metrics.stem}"


def predictions_for(
    runs: str | Path, run: str, train: str, test: str, weights: str = "last"
) -> list[Path]:
    """The prediction files `unilearn aggregate` pools into `metrics_path(run, train, test)`."""
    if test != train and (test != SFER_TEST or FOLDS[train]):
        raise ValueError(
            f"metrics {run}/{train}/{test}: a model is tested on its own dataset, or a "
            f"single-split joint model on {SFER_TEST}"
        )
    return [prediction_path(runs, run, target, test, weights) for target in targets(train)]
