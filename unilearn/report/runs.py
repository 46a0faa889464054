"""A run of the workflow, and what it adds to the config: an experiment of the config
(`unilearn`), or one point of a sweep on top of it (`unilearn@n_experts=4`,
`unilearn@sfer_proportion=0.25`, `unilearn@moae_position=0-2-4`).

A sweep point is carried as typed overrides, `(key, value)` pairs whose value is the one in the
config's `sweeps` list (an int stays an int, a list a list): `run_overrides` maps a run name to
them, `sweep_runs` maps the points of a sweep to their run names. The name is only a name (the
run's directory, its W&B group): a point's value is looked up in `cfg.sweeps`, never parsed back
out of the name. The one place a value becomes text is the command line of the engine a workflow
job starts (`override_arg`).

Torch-free: the workflow, `unilearn status`, the report and the engines' W&B naming use it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# What a run's name looks like on disk (runs/<config>/finetune/<run>/...): kept as it is, so
# existing run directories keep their paths. A seed other than the config's `seed` (the `seeds`
# fan-out, `unilearn.report.seeds`) is one more suffix: `unilearn@seed=1`,
# `unilearn@n_experts=4@seed=1`; a sweep is never named `seed`.
_EXPERIMENT, _SWEEP, _VALUE = r"[A-Za-z0-9_]+", r"(?!seed=)[A-Za-z0-9_.]+", r"[^/@]+"
_SEED = r"@seed=(?P<seed>0|[1-9][0-9]*)"
_RUN = re.compile(
    rf"^(?P<experiment>{_EXPERIMENT})(@(?P<sweep>{_SWEEP})=(?P<value>{_VALUE}))?({_SEED})?$"
)
# The same, unanchored and without groups (the workflow's `run` wildcard).
SWEEP_POINT_PATTERN = rf"(@{_SWEEP}={_VALUE})?"
SEED_PATTERN = r"(@seed=(0|[1-9][0-9]*))?"
RUN_PATTERN = _EXPERIMENT + SWEEP_POINT_PATTERN + SEED_PATTERN

Override = tuple[str, Any]


@dataclass(frozen=True)
class Run:
    experiment: str
    sweep: str | None = None
    value: str | None = None  # the point's slug, see `value_slug`
    seed: int | None = None  # None: the config's own `seed`

    @property
    def point(self) -> str:
        """The name without its seed: what the seeds of one cell share (their W&B group)."""
        return (
            self.experiment
            if self.sweep is None
            else f"{self.experiment}@{self.sweep}={self.value}"
        )

    @property
    def name(self) -> str:
        return self.point if self.seed is None else f"{self.point}@seed={self.seed}"


def value_slug(value: Any) -> str:
    """A sweep value as it appears in a run's name: 4, 0.25, early, 0-2-4 (a list of blocks)."""
    if isinstance(value, (list, tuple)):
        return "-".join(str(v) for v in value)
    return str(value)


def parse_run(name: str) -> Run:
    """`unilearn@n_experts=4` -> Run("unilearn", "n_experts", "4"): the name's parts, as text."""
    match = _RUN.match(name)
    if not match:
        raise ValueError(
            f"run name {name!r}: expected EXPERIMENT or EXPERIMENT@SWEEP=VALUE, optionally "
            "followed by @seed=N"
        )
    seed = None if match["seed"] is None else int(match["seed"])
    return Run(match["experiment"], match["sweep"], match["value"], seed)


def sweep_points(cfg, sweep: str) -> list[Override]:
    """The typed override of each point of `sweeps.<sweep>`: a short sweep name sets its config
    key (`n_experts` -> `model.moae.n_experts`, `config.SWEEP_KEYS`), any other is a dotted key."""
    from unilearn.config import SWEEP_KEYS, ConfigError

    if sweep not in cfg.sweeps:
        raise ConfigError(f"sweeps: unknown sweep {sweep!r}; known: {sorted(cfg.sweeps)}")
    key = SWEEP_KEYS.get(sweep, sweep)
    return [(key, value) for value in cfg.sweeps[sweep]]


def run_overrides(cfg, run: Run | str) -> list[Override]:
    """The typed `(key, value)` overrides a run adds to the config: its sweep point, if any,
    and its seed, if not the config's own."""
    run = parse_run(run) if isinstance(run, str) else run
    seed = [] if run.seed is None else [("seed", run.seed)]
    if run.sweep is None:
        return seed
    for override in sweep_points(cfg, run.sweep):
        if value_slug(override[1]) == run.value:
            return [override, *seed]
    raise ValueError(
        f"run {run.name}: {run.value!r} is not a point of sweeps.{run.sweep} "
        f"({[value_slug(v) for v in cfg.sweeps[run.sweep]]})"
    )


def run_config(cfg, run: Run | str):
    """The config a run trains with: `cfg` with the run's sweep point applied."""
    overrides = run_overrides(cfg, run)
    return cfg.with_overrides(overrides) if overrides else cfg


def finetune_hash(cfg, run: Run | str, dataset: str) -> str:
    """The fine-tuning config hash a run on `dataset` records (its `config.sha256`, what the
    engine computes): the run's sweep point applied, its experiment resolved for the dataset.
    The workflow re-runs a fine-tuning when it changes; `unilearn status` tells stale runs by it."""
    from unilearn.config import config_hash

    run = parse_run(run) if isinstance(run, str) else run
    resolved = run_config(cfg, run).resolve_experiment(run.experiment, dataset)
    return config_hash(resolved.config, "finetune", resolved)


def sweep_runs(cfg, sweep: str, experiment: str = "unilearn", seed: int | None = None) -> list[Run]:
    """One run per point of `sweeps.<sweep>`, trained with `seed` (None: the config's own); a
    point that leaves the experiment as it is (`point_is_experiment`) is the experiment's own run
    of that seed, so the workflow trains it once (same name, same files, same W&B group)."""
    if sweep not in cfg.sweeps:
        raise ValueError(f"sweeps.{sweep}: not in the config (sweeps: {sorted(cfg.sweeps)})")
    seed = None if seed == cfg.seed else seed
    runs = []
    for override in sweep_points(cfg, sweep):
        if point_is_experiment(cfg, experiment, override):
            runs.append(Run(experiment, seed=seed))
        else:
            runs.append(Run(experiment, sweep, value_slug(override[1]), seed))
    return runs


def point_is_experiment(cfg, experiment: str, override: Override) -> bool:
    """Whether a sweep point leaves every fine-tuning of `experiment` as it is (the same config
    hash on every dataset it trains on)."""
    from unilearn.catalogue import SFER_DATASETS
    from unilearn.config import config_hash

    tasks = cfg.experiments[experiment].tasks
    datasets = list(cfg.data.dfer_datasets) if "dfer" in tasks else list(SFER_DATASETS)
    point = cfg.with_overrides([override])
    for dataset in datasets:
        ours = point.resolve_experiment(experiment, dataset)
        theirs = cfg.resolve_experiment(experiment, dataset)
        if config_hash(ours.config, "finetune", ours) != config_hash(
            theirs.config, "finetune", theirs
        ):
            return False
    return True


def override_arg(override: Override) -> str:
    """A typed override as the engines' command line takes it: `key=<JSON>`, which their YAML
    reading gives back as the same value (`config.parse_override`)."""
    key, value = override
    return f"{key}={json.dumps(value)}"
