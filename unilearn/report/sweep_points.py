"""A sweep point whose resolved config equals its experiment's is that experiment's run: the
point `unilearn@n_experts=8` of a config whose MoAE has 8 experts is the run `unilearn`, so the
workflow trains it once (same name, same files, same W&B group)."""

from __future__ import annotations

from typing import Any


def point_is_experiment(cfg, experiment: str, override: str) -> bool:
    """Whether `override` (a sweep point's `key=value`) leaves every fine-tuning of `experiment`
    as it is (the same config hash on every dataset it trains on)."""
    from unilearn.catalogue import SFER_DATASETS
    from unilearn.config import config_hash

    tasks = cfg.experiments[experiment].tasks
    datasets = list(cfg.data.dfer_datasets) if "dfer" in tasks else list(SFER_DATASETS)
    point = cfg.with_overrides([override])
    for dataset in datasets:
        ours = point.resolve_experiment(experiment, dataset).config
        theirs = cfg.resolve_experiment(experiment, dataset).config
        if config_hash(ours, "finetune") != config_hash(theirs, "finetune"):
            return False
    return True


def sweep_point_run(cfg, experiment: str, sweep: str, value: Any, override: str):
    """The `layout.Run` of one sweep point: the experiment itself where the point changes
    nothing, else `EXPERIMENT@SWEEP=VALUE`."""
    from unilearn.report.layout import Run, value_slug

    if point_is_experiment(cfg, experiment, override):
        return Run(experiment)
    return Run(experiment, sweep, value_slug(value))
