"""Where every file of the workflow lives: the data under `data.workdir`, each run's directory and
the files in it, the pooled metrics, the logs. The one home of these paths: the rules (through
`unilearn.plan` or directly, torch-free at parse time), the engines, `unilearn status` and the
tables all name a file through this module.

Under `data.workdir`:

    synth/synth.json, doctor/<dataset>.md, manifests/<dataset>.parquet,
    store/<table>.parquet (+ store/<dataset>/parts/shard-IIII-of-NNNN.done.json when sharded)

Under the runs root (`runs/<config name>/`):

    pretrain/<mode>/checkpoint.pt                  <mode>@seed=N for a seeded pre-training
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
    logs/<stage>/.../<name>.log                    each job's log (`log_path`)

Every run directory (a stage's `--out`) also holds the files of `RunFiles`: `last.pt` (resumable
state), `config.yaml` and `config.sha256` (the config it runs with and its hash), `log.jsonl` (one
line per epoch), `progress.json` (what `unilearn status` reads) and `slurm/` (its Slurm jobs).

The fine-tuning job writes every prediction file of its run (`tests_of`): its own test split,
and for a joint model fine-tuned on a single-split DFER dataset also AffectNet-7 (Table 4,
Figure 4).

A run is an experiment of the config, or one point of a sweep on top of it:
`unilearn`, `unilearn@n_experts=4`, `unilearn@sfer_proportion=0.25` (its name and the overrides
it adds: `unilearn.report.runs`). A target is a dataset and its fold: `dfew-fold3` is parsed by
`parse_target` alone (the workflow's `{train}{fold}` wildcards share its `FOLD_SUFFIX`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from unilearn.catalogue import FOLDS, SFER_DATASETS

# The SFER test set of a joint model.
SFER_TEST = SFER_DATASETS[0]


# -- the data, under `data.workdir` ---------------------------------------------------------------


def synth_dir(workdir: str | Path) -> Path:
    return Path(workdir) / "synth"


SYNTH_SUMMARY = "synth.json"  # written last by `unilearn synth`: the tree is complete


def doctor_report(workdir: str | Path, dataset: str) -> Path:
    return Path(workdir) / "doctor" / f"{dataset}.md"


def manifests_dir(workdir: str | Path) -> Path:
    return Path(workdir) / "manifests"


def manifest_path(manifests: str | Path, dataset: str) -> Path:
    return Path(manifests) / f"{dataset}.parquet"


def store_dir(workdir: str | Path) -> Path:
    return Path(workdir) / "store"


def store_table(store: str | Path, table: str) -> Path:
    return Path(store) / f"{table}.parquet"


def store_settings(store: str | Path, dataset: str) -> Path:
    """`<dataset>/settings.json`: how the store cut and keeps a dataset's clips (the preprocess
    settings: framing, frame stride, sizes); a store made another way is refused, not mixed."""
    return Path(store) / dataset / "settings.json"


def shard_marker(
    store: str | Path, dataset: str, shard: int | str, shards: int | str, kind: str = "done.json"
) -> Path:
    """`<dataset>/parts/shard-IIII-of-NNNN.done.json`: one part of a sharded preprocess is done
    (`kind` "failed.txt": the clips it could not cut). Ints are written with four digits; a
    wildcard such as `{shard}` is kept as it is."""
    shard, shards = (f"{n:04d}" if isinstance(n, int) else n for n in (shard, shards))
    return Path(store) / dataset / "parts" / f"shard-{shard}-of-{shards}.{kind}"


# -- the runs root and its logs -------------------------------------------------------------------

SLURM_DIR = "slurm"  # the submitit folders of a stage's jobs (beside its files, or under logs/)


def run_root(runs: str | Path, config_name: str) -> Path:
    """`runs/<config name>`: every run, metric and log of one config."""
    return Path(runs) / config_name


def logs_dir(run_root: str | Path) -> Path:
    return Path(run_root) / "logs"


def log_path(logs: str | Path, stage: str, *names: str) -> Path:
    """A job's log: `logs/<stage>/<names...>.log` (`log_path(logs, "finetune", run, target)`);
    with no name, `logs/<stage>.log`."""
    if not names:
        return Path(logs) / f"{stage}.log"
    *folders, name = names
    return Path(logs, stage, *folders) / f"{name}.log"


def slurm_logs(logs: str | Path, stage: str) -> Path:
    """Where a CPU stage's Slurm jobs keep their logs (the doctor has no --out beside which)."""
    return Path(logs) / SLURM_DIR / stage


def result_path(results: str | Path, name: str, ext: str) -> Path:
    """A table's or figure's file: `results/table1.csv`, `results/figure3a.pdf`."""
    return Path(results) / f"{name}.{ext}"


# -- one run directory (a stage's --out) ----------------------------------------------------------

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
CHECKPOINT_NAME = {
    "last": "checkpoint.pt",
    "best": "checkpoint-best.pt",
    "val": "checkpoint-val.pt",
}


# What a run directory (a stage's --out) holds besides its weights and predictions: `RunFiles`.
RUN_FILES = {
    "resume": "last.pt",  # the resumable training state
    "config": "config.yaml",  # the resolved config the run trains with
    "config_hash": "config.sha256",  # its hash: what a resume and `unilearn status` compare
    "history": "log.jsonl",  # one line per epoch
    "progress": "progress.json",  # where the run is (`unilearn.progress`; `unilearn status`)
    "slurm": SLURM_DIR,  # the submitit folders of its jobs
}


@dataclass(frozen=True)
class RunFiles:
    """The files of one run directory `dir` (`run_files(dir)`; names: `RUN_FILES`)."""

    dir: Path
    resume: Path
    config: Path
    config_hash: Path
    history: Path
    progress: Path
    slurm: Path

    def checkpoint(self, weights: str = "last") -> Path:
        """The final weights (`checkpoint.pt`), or a picked epoch's (`checkpoint-best.pt`,
        `checkpoint-val.pt`)."""
        return self.dir / CHECKPOINT_NAME[weights]


def run_files(run_dir: str | Path) -> RunFiles:
    run_dir = Path(run_dir)
    return RunFiles(run_dir, **{key: run_dir / name for key, name in RUN_FILES.items()})


def weights_of(cfg) -> tuple[str, ...]:
    """The weights a config's fine-tuning jobs write predictions of: `val` only with a
    validation split (`finetune.selection.validation`)."""
    return WEIGHTS if cfg.finetune.selection.holdout is not None else WEIGHTS[:2]


def weights_label(weights: str, cfg) -> str:
    """How the tables of `cfg` label `weights` (the `best` label names the selection rule)."""
    if weights == "best" and cfg.finetune.selection.best == "test":
        return BEST_ON_TEST_LABEL
    return WEIGHTS_LABEL[weights]


# -- targets: a dataset and its fold ---------------------------------------------------------------

FOLD_SEP = "-fold"
_FOLDS = sorted({k for ks in FOLDS.values() for k in ks})
# `-foldK` of a cross-validated dataset's target, or nothing (the workflow's `{fold}` wildcard).
FOLD_SUFFIX = rf"({FOLD_SEP}[{min(_FOLDS)}-{max(_FOLDS)}])?"
_TARGET = re.compile(rf"^(?P<dataset>.+?)(?P<suffix>{FOLD_SUFFIX})$")


def target_name(dataset: str, fold: int | None = None) -> str:
    """("dfew", 3) -> `dfew-fold3`; ("ferv39k", None) -> `ferv39k`."""
    return dataset if fold is None else f"{dataset}{FOLD_SEP}{fold}"


def parse_fold(suffix: str) -> int | None:
    """A target's fold suffix (`-fold3`, or "") -> 3, or None."""
    return int(suffix.removeprefix(FOLD_SEP)) if suffix else None


def parse_target(target: str) -> tuple[str, int | None]:
    """`dfew-fold3` -> ("dfew", 3); `ferv39k` -> ("ferv39k", None)."""
    match = _TARGET.match(target)
    return match["dataset"], parse_fold(match["suffix"])


def targets(train: str) -> list[str]:
    """Fine-tuning runs of one dataset: one per fold (DFEW, MAFW) or the official split."""
    return [target_name(train, k) for k in FOLDS[train]] or [train]


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


# -- predictions, their sidecars and the pooled metrics --------------------------------------------


def prediction_name(test: str, weights: str = "last") -> str:
    """`pred-dfew.parquet` (last epoch), `pred-dfew.best.parquet` (best epoch),
    `pred-dfew.val.parquet` (the validation split's pick)."""
    return f"pred-{test}{_WEIGHTS_SUFFIX[weights]}.parquet"


def prediction_path(
    runs: str | Path, run: str, target: str, test: str, weights: str = "last"
) -> Path:
    return finetune_dir(runs, run, target) / prediction_name(test, weights)


# What a test writes beside its predictions file (`sidecar_path`).
METRICS = ".metrics.json"  # UAR / WAR / per-class recall / confusion of this fold
EXPERT_USAGE = ".expert_usage.json"  # tokens routed to each expert (Figure 4a)
CENTRES = ".centres.parquet"  # class centres (Figure 4b)
QUARANTINE = ".quarantine.parquet"  # test clips that could not be read, with the reason
# the sidecars the workflow declares as the fine-tuning's outputs
PREDICTION_SIDECARS = (METRICS, EXPERT_USAGE, CENTRES)


def sidecar_path(prediction: str | Path, suffix: str) -> Path:
    """A table's sidecar: `pred-x.parquet` -> `pred-x.expert_usage.json` (what the test writes
    beside), `DATASET.parquet` -> `DATASET.quarantine.parquet` (a manifest's or store's rows left
    out, with the reason)."""
    prediction = Path(prediction)
    return prediction.with_name(prediction.name.removesuffix(".parquet") + suffix)


def metrics_path(runs: str | Path, run: str, train: str, test: str, weights: str = "last") -> Path:
    return Path(runs) / "metrics" / run / train / f"{test}{_WEIGHTS_SUFFIX[weights]}.json"


def wandb_dir_beside(result: str | Path) -> Path:
    """The W&B run directory kept beside a result file (`.wandb-<stem>`; the run's id is kept in
    it, so a re-run logs to the same run). A pooled metrics file's: `unilearn aggregate` logs the
    pooled numbers there and `unilearn tables` adds the paired comparison to the same run. A
    test's predictions file's: `.wandb-pred-<test>` beside it."""
    result = Path(result)
    return result.parent / f".wandb-{result.stem}"


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
