"""Where the workflow keeps each run's files, and how a run is named (one place for both the
Snakefile's path arithmetic and the tables/figures that read the results).

Under the runs root (`runs/<config name>/`):

    pretrain/<mode>/checkpoint.pt
    finetune/<run>/<target>/checkpoint.pt          target: ferv39k | affectnet7 | dfew-fold3 ...
    finetune/<run>/<target>/pred-<test>.parquet    (+ .metrics.json, .expert_usage.json, .centres.parquet)
    metrics/<run>/<train>/<test>.json              folds pooled by `unilearn aggregate`

A run is an experiment of the config, or one point of a sweep on top of it:
`unilearn`, `unilearn@n_experts=4`, `unilearn@sfer_proportion=0.25`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FOLDED = {"dfew": (1, 2, 3, 4, 5), "mafw": (1, 2, 3, 4, 5)}
SFER_TEST = "affectnet7"
# What each fine-tuning dataset's clips come from in the store (AffectNet-7 is the 8-class
# AffectNet table without contempt, see unilearn.data.datasets.load_store_table).
STORE_TABLE = {"dfew": "dfew", "mafw": "mafw", "ferv39k": "ferv39k", "affectnet7": "affectnet"}
_RUN = re.compile(r"^(?P<experiment>[A-Za-z0-9_]+)(@(?P<sweep>[A-Za-z0-9_.]+)=(?P<value>[^/]+))?$")


@dataclass(frozen=True)
class Run:
    experiment: str
    sweep: str | None = None
    value: str | None = None  # the point's slug, see `value_slug`

    @property
    def name(self) -> str:
        return (
            self.experiment
            if self.sweep is None
            else f"{self.experiment}@{self.sweep}={self.value}"
        )


def value_slug(value: Any) -> str:
    """A sweep value as it appears in a path: 4, 0.25, early, 0-2-4 (a list of blocks)."""
    if isinstance(value, (list, tuple)):
        return "-".join(str(v) for v in value)
    return str(value)


def parse_run(name: str) -> Run:
    match = _RUN.match(name)
    if not match:
        raise ValueError(f"run name {name!r}: expected EXPERIMENT or EXPERIMENT@SWEEP=VALUE")
    return Run(match["experiment"], match["sweep"], match["value"])


def sweep_runs(cfg, sweep: str, experiment: str = "unilearn") -> list[Run]:
    """One run per point of `sweeps.<sweep>` of the config (a point equal to the experiment is
    the experiment's run: `sweep_points.sweep_point_run`)."""
    from unilearn.report.sweep_points import sweep_point_run

    if sweep not in cfg.sweeps:
        raise ValueError(f"sweeps.{sweep}: not in the config (sweeps: {sorted(cfg.sweeps)})")
    points = zip(cfg.sweeps[sweep], cfg.sweep_overrides(sweep))
    return [sweep_point_run(cfg, experiment, sweep, v, o) for v, o in points]


def run_overrides(cfg, run: Run | str) -> list[str]:
    """The `key=value` overrides a run adds to the config (its sweep point, if any)."""
    run = parse_run(run) if isinstance(run, str) else run
    if run.sweep is None:
        return []
    points = cfg.sweep_overrides(run.sweep)
    for value, override in zip(cfg.sweeps[run.sweep], points):
        if value_slug(value) == run.value:
            return [override]
    raise ValueError(
        f"run {run.name}: {run.value!r} is not a point of sweeps.{run.sweep} "
        f"({[value_slug(v) for v in cfg.sweeps[run.sweep]]})"
    )


def targets(train: str) -> list[str]:
    """Fine-tuning runs of one dataset: one per fold (DFEW, MAFW) or the official split."""
    return [f"{train}-fold{k}" for k in FOLDED[train]] if train in FOLDED else [train]


def parse_target(target: str) -> tuple[str, int | None]:
    """`dfew-fold3` -> ("dfew", 3); `ferv39k` -> ("ferv39k", None)."""
    dataset, sep, fold = target.partition("-fold")
    return (dataset, int(fold)) if sep else (dataset, None)


def pretrain_dir(runs: str | Path, mode: str) -> Path:
    return Path(runs) / "pretrain" / mode


def finetune_dir(runs: str | Path, run: str, target: str) -> Path:
    return Path(runs) / "finetune" / run / target


def prediction_path(runs: str | Path, run: str, target: str, test: str) -> Path:
    return finetune_dir(runs, run, target) / f"pred-{test}.parquet"


def prediction_sidecar(prediction: Path, suffix: str) -> Path:
    """`pred-x.parquet` -> `pred-x.expert_usage.json` (what `unilearn evaluate` writes beside)."""
    return prediction.with_name(prediction.name.removesuffix(".parquet") + suffix)


def metrics_path(runs: str | Path, run: str, train: str, test: str) -> Path:
    return Path(runs) / "metrics" / run / train / f"{test}.json"


def predictions_for(runs: str | Path, run: str, train: str, test: str) -> list[Path]:
    """The prediction files `unilearn aggregate` pools into `metrics_path(run, train, test)`."""
    if test != train and (test != SFER_TEST or train in FOLDED):
        raise ValueError(
            f"metrics {run}/{train}/{test}: a model is tested on its own dataset, or a "
            f"single-split joint model on {SFER_TEST}"
        )
    return [prediction_path(runs, run, target, test) for target in targets(train)]
