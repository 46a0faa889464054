"""Weights & Biases logging: one W&B run per training run, evaluation and pooled metrics cell.

- Where a run goes: `--wandb MODE` (one run) > the config's `wandb.mode` > `WANDB_MODE` >
  offline; the project likewise (`wandb.project` > `WANDB_PROJECT` > `unilearn`).
- Names: group `<config name>/<run>` (a run is an experiment or a sweep point, so each point of a
  sweep is its own group), name = the target (`dfew-fold3`, `ferv39k`); job_type = the stage.
  The seeds of one run (`seeds:`, `unilearn@seed=1`) share its group, each seed its own name:
  `ferv39k` for the config's seed, `ferv39k@seed=1` for another (`group_and_name`).
- The run config carries what a reader filters on: experiment, dataset, fold, sweep key and
  value, the init checkpoint (path + sha256), git sha and config hash.
- A resumed job (requeue, kill) continues the same W&B run: its id is kept in the run directory
  and `wandb.init(resume="allow")`; offline, each attempt writes its own `offline-run-*` folder
  with that id and `wandb sync` appends them to one run.

Only rank 0 logs. The API key is never read or written here: W&B takes it from its own login
(~/.netrc) or WANDB_API_KEY.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from unilearn.atomic import write_text

_ID_FILE = "wandb_id"
DEFAULT_PROJECT = "unilearn"


def resolve_mode(flag: str | None, configured: str | None) -> str:
    """The W&B mode of a run: the flag, else the config, else `WANDB_MODE`, else offline."""
    return flag or configured or os.environ.get("WANDB_MODE") or "offline"


def resolve_project(configured: str | None) -> str:
    return configured or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT


class WandbRun:
    """A W&B run on rank 0; every method is a no-op elsewhere or with mode `disabled` (`init`
    None). `init`: the `wandb.init` settings (project, entity, mode, group, job_type, name,
    config) of a run kept in `run_dir`."""

    def __init__(self, init: dict[str, Any] | None, run_dir: str | os.PathLike) -> None:
        self.run = None
        self._wandb = None
        if init is None:
            return
        import wandb

        self._wandb = wandb
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            **init,
            id=stable_run_id(run_dir),
            resume="allow",
            dir=str(run_dir),
            settings=wandb.Settings(console="off", silent=True),
        )

    @property
    def active(self) -> bool:
        return self.run is not None

    @property
    def dir(self) -> Path | None:
        """The run's local directory (`.../wandb/offline-run-*` or `run-*`)."""
        return Path(self.run.dir).parent if self.run is not None else None

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if self.run is not None:
            self.run.log(metrics, step=step)

    def summary(self, metrics: dict[str, Any]) -> None:
        if self.run is not None:
            for key, value in metrics.items():
                self.run.summary[key] = value

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None


def stable_run_id(run_dir: Path) -> str:
    """The W&B id of the run kept in `run_dir` (made once, then reused by every attempt)."""
    id_file = run_dir / _ID_FILE
    if id_file.is_file():
        return id_file.read_text().strip()
    run_id = secrets.token_hex(8)
    write_text(id_file, run_id + "\n")
    return run_id


def run_for(
    cfg,
    *,
    job_type: str,
    group: str,
    name: str,
    run_dir: str | os.PathLike,
    is_main: bool,
    mode: str | None = None,
    identity: dict[str, Any] | None = None,
) -> WandbRun:
    """A WandbRun configured from `cfg.wandb` and the environment (`mode`, e.g. from `--wandb
    online`, wins); `identity` (experiment, dataset, fold, sweep, init, ...) goes into its config."""
    from unilearn.config import config_hash
    from unilearn.report.provenance import git_sha

    mode = resolve_mode(mode, cfg.wandb.mode)
    if not is_main or mode == "disabled":
        return WandbRun(None, run_dir)
    config = cfg.model_dump(mode="json", exclude={"experiments", "sweeps"})
    config["config_hash"] = config_hash(cfg)
    config["git_sha"] = git_sha()
    config.update(identity or {})  # e.g. a pooled cell's config hash is its runs' one
    init = {"project": resolve_project(cfg.wandb.project), "entity": cfg.wandb.entity, "mode": mode}
    init |= {"group": group, "job_type": job_type, "name": name, "config": config}
    return WandbRun(init, run_dir)


def run_identity(
    run: str | None,
    experiment: str,
    dataset: str,
    fold: int | None,
    init: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """What a run is, for its W&B config: experiment, run (sweep point), sweep key and value,
    dataset, fold, init checkpoint with its sha256."""
    from unilearn.report.provenance import file_sha256
    from unilearn.report.runs import parse_run

    point = parse_run(run or experiment)
    init_path = Path(init) if init else None
    return {
        "experiment": experiment,
        "run": point.name,
        "sweep": point.sweep,
        "sweep_value": point.value,
        **({} if point.seed is None else {"seed": point.seed}),  # else the config's `seed`
        "dataset": dataset,
        "fold": fold,
        "init": str(init_path) if init_path else None,
        "init_sha256": file_sha256(init_path) if init_path and init_path.is_file() else None,
    }


def group_and_name(config_name: str, run: str, name: str) -> tuple[str, str]:
    """W&B group and name of `run`'s job `name` (a target, `ferv39k-pooled`...): the seeds of a
    run share the group `<config name>/<run without its seed>`; another seed than the config's
    adds `@seed=N` to the name."""
    from unilearn.report.runs import parse_run

    point = parse_run(run)
    return (
        f"{config_name}/{point.point}",
        name if point.seed is None else f"{name}@seed={point.seed}",
    )


def add_wandb_argument(parser) -> None:
    parser.add_argument(
        "--wandb",
        choices=["offline", "online", "disabled"],
        default=None,
        help="W&B mode of this run (else the config's wandb.mode, else WANDB_MODE, else offline)",
    )


# -- what the stages log ------------------------------------------------------------------------


def log_evaluation(
    run: WandbRun,
    metrics: dict[str, Any],
    usage: dict[str, list[int]] | None = None,
    prefix: str = "test",
) -> None:
    """From `classification_metrics` output: UAR/WAR, per-class recall and the confusion matrix
    (a W&B plot and a table of counts); when given, the share of tokens each expert received per
    MoAE block."""
    if not run.active:
        return
    summary = {f"{prefix}/uar": metrics["uar"], f"{prefix}/war": metrics["war"],
               f"{prefix}/n": metrics["n"]}  # fmt: skip
    for name, value in (metrics.get("per_class_recall") or {}).items():
        summary[f"{prefix}/recall/{name}"] = value
    for block, counts in (usage or {}).items():
        total = max(sum(counts), 1)
        summary.update({f"experts/block{block}/e{i}": c / total for i, c in enumerate(counts)})
    run.summary(summary)
    classes, matrix = list(metrics["class_names"]), metrics["confusion"]
    wandb = run._wandb
    cells = [[classes[i], classes[j], int(matrix[i][j])] for i in range(len(classes))
             for j in range(len(classes))]  # fmt: skip
    logged = {f"{prefix}/confusion_counts": wandb.Table(columns=["true", "predicted", "count"],
                                                        data=cells)}  # fmt: skip
    labels = [i for i, row in enumerate(matrix) for j, n in enumerate(row) for _ in range(n)]
    preds = [j for i, row in enumerate(matrix) for j, n in enumerate(row) for _ in range(n)]
    if labels:
        logged[f"{prefix}/confusion_matrix"] = wandb.plot.confusion_matrix(
            y_true=labels, preds=preds, class_names=classes
        )
    run.log(logged, step=0)


def log_pooled(cfg, result: dict[str, Any], run: str, train: str, mode: str | None = None,
               run_dir: str | os.PathLike | None = None) -> None:  # fmt: skip
    """One W&B run per pooled metrics cell (`unilearn aggregate`): the paper's number (UAR/WAR
    pooled over the test folds), in the group of the per-fold runs it pools, with the tables it
    appears in."""
    from unilearn.report import spec

    test = result["dataset"]
    tables = [t for t in spec.TABLES if _in_table(spec, t, cfg, run, train, test)]
    identity = {
        **run_identity(run, result.get("experiment") or run.split("@")[0], train, None),
        "test_dataset": test,
        "config_hash": result.get("config_hash"),
        "folds": result.get("folds"),
        "tables": tables,
    }
    group, name = group_and_name(cfg.name, run, pooled_name(train, test))
    wandb = run_for(cfg, job_type="aggregate", group=group, name=name,
                    run_dir=run_dir or ".", is_main=True, mode=mode, identity=identity)  # fmt: skip
    log_evaluation(wandb, result, prefix="pooled")
    # the bootstrap interval of the pooled numbers (`unilearn aggregate`)
    wandb.summary({f"pooled/{k}": result[k] for k in INTERVAL_KEYS if k in result})
    wandb.finish()


INTERVAL_KEYS = ("uar_lo", "uar_hi", "war_lo", "war_hi")
PAIRED_KEYS = ("diff_uar", "diff_uar_lo", "diff_uar_hi", "p_uar",
               "diff_war", "diff_war_lo", "diff_war_hi", "p_war", "n_paired")  # fmt: skip


def pooled_name(train: str, test: str) -> str:
    """The W&B name of a pooled metrics cell."""
    return f"{train}-pooled" if test == train else f"{train}-on-{test}"


def log_paired(cfg, comparison: dict[str, Any], run: str, train: str, test: str, reference: str,
               run_dir: str | os.PathLike, mode: str | None = None) -> None:  # fmt: skip
    """The paired comparison of a pooled cell with its reference row (`unilearn tables`), added
    to the cell's pooled W&B run (the same id, kept in `run_dir`): `paired/diff_uar`,
    `paired/diff_uar_lo`, ..., `paired/p_uar`, ... (fractions, this run minus the reference)
    and `paired/reference`, the reference's run."""
    group, name = group_and_name(cfg.name, run, pooled_name(train, test))
    wandb = run_for(cfg, job_type="aggregate", group=group, name=name, run_dir=run_dir,
                    is_main=True, mode=mode, identity={"test_dataset": test})  # fmt: skip
    summary = {f"paired/{k}": comparison[k] for k in PAIRED_KEYS if k in comparison}
    wandb.summary(summary | {"paired/reference": reference})
    wandb.finish()


def _in_table(spec, table: str, cfg, run: str, train: str, test: str) -> bool:
    try:
        cells = spec.required_cells(table, cfg)
    except (ValueError, KeyError):  # a table this config cannot build
        return False
    return any((c.run, c.train, c.test) == (run, train, test) for c in cells)
