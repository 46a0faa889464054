# The validated unilearn config, the directories of this workflow and the command-line pieces
# every rule shares. Only path arithmetic and config look-ups: the work is done by `unilearn`.

import os
import shlex
import sys
import time

from snakemake.exceptions import WorkflowError

from unilearn.catalogue import DATASETS, FINETUNE_DATASETS, FOLDS, PRETRAIN_MODES, STORE_DATASETS
from unilearn.config import ConfigError, config_hash, load_config
from unilearn.report import layout, spec


def _as_list(value):
    return [value] if isinstance(value, str) else list(value)


CONFIGS = _as_list(config["configs"])
OVERRIDES = _as_list(config["overrides"])
try:
    CFG = load_config(CONFIGS, OVERRIDES)
except ConfigError as error:
    raise WorkflowError(f"invalid unilearn config: {error}") from None

# Rules carry the hash of the config sections they read as a param: Snakemake re-runs a job whose
# params changed, so editing e.g. finetune.epochs redoes the fine-tunings but not pre-training,
# while launcher and wandb (not hashed) never cause a re-run.
CONFIG_HASH = {stage: config_hash(CFG, stage) for stage in (None, "pretrain", "finetune")}

WORKDIR = CFG.data.workdir
SYNTH = f"{WORKDIR}/synth"
DOCTOR = f"{WORKDIR}/doctor"
MANIFESTS = f"{WORKDIR}/manifests"
STORE = f"{WORKDIR}/store"
RUNS = f"{config['runs']}/{CFG.name}"
RESULTS = config["results"]
LOGS = f"{RUNS}/logs"
TABLES = spec.TABLES
FIGURES = spec.FIGURES

# W&B: runs are grouped by <config name>/<experiment> (the engines), so a sweep's points sit side
# by side; every run started by this invocation also carries one tag (jobs inherit the variable,
# Slurm jobs too), to find them together.
os.environ.setdefault("WANDB_TAGS", f"workflow-{CFG.name}-{time.strftime('%Y%m%d-%H%M%S')}")

# The interpreter running Snakemake, so rules need no activated environment.
UNILEARN = f"{shlex.quote(sys.executable)} -m unilearn"
CONFIG_ARGS = " ".join(f"--config {shlex.quote(path)}" for path in CONFIGS)
OVERRIDE_ARGS = " ".join(shlex.quote(o) for o in OVERRIDES)
LAUNCHER = config["launcher"] or CFG.launcher.name
# How each GPU stage starts: here, or as a Slurm job through `python -m unilearn.launch`, which
# submits the same stage command without importing it (a waiting submitter holds ~40 MB instead
# of the ~800 MB of torch and friends, so many folds can wait side by side on a login node).
def SUBMITTED_STAGE(stage):
    """`python -m unilearn.launch STAGE <configs> -- `: a Slurm job runs the stage's command that
    follows (the submitter does not import the stage)."""
    return (
        f"{shlex.quote(sys.executable)} -m unilearn.launch {stage} {CONFIG_ARGS} "
        f"{OVERRIDE_ARGS} --submitit-cluster {config['submitit_cluster']} -- "
    )


if LAUNCHER == "submitit":
    GPU_STAGE = {stage: SUBMITTED_STAGE(stage) for stage in ("pretrain", "finetune", "evaluate")}
else:
    GPU_STAGE = {s: f"{UNILEARN} {s} --launcher local" for s in ("pretrain", "finetune", "evaluate")}
# A GPU stage run here uses the config's torch threads; submitted to Slurm, only a waiting process.
GPU_STAGE_THREADS = 1 if LAUNCHER == "submitit" else (CFG.runtime.threads or 1)
# The CPU stages (doctor, manifest, preprocess) likewise: Slurm CPU jobs under submitit, with the
# job's CPUs (launcher.stages.<stage>) as their workers; here `--workers {threads}` as before.
CPU_STAGES = ("doctor", "manifest", "preprocess")
if LAUNCHER == "submitit":
    # their job logs under LOGS/slurm/ (the doctor has no --out beside which they would go)
    CPU_STAGE = {s: f"{SUBMITTED_STAGE(s)[:-3]} --slurm-folder {LOGS}/slurm/{s} -- " for s in CPU_STAGES}
else:
    CPU_STAGE = {s: f"{UNILEARN} {s}" for s in CPU_STAGES}
# A submitted CPU stage only waits here: one thread, no local_heavy slot.
CPU_STAGE_LOCAL_HEAVY = 0 if LAUNCHER == "submitit" else 1


def cpu_threads(n):
    return 1 if LAUNCHER == "submitit" else n


def cpu_workers(wildcards, threads):
    """`--workers N` for a CPU stage run here (its Snakemake threads); none for a Slurm job,
    whose stage defaults to the CPUs Slurm gave it."""
    return "" if LAUNCHER == "submitit" else f"--workers {threads}"

TESTSETS = FINETUNE_DATASETS


def _alternatives(values):
    return "|".join(v.replace("+", r"\+") for v in values)


wildcard_constraints:
    dataset=_alternatives(STORE_DATASETS),
    mode=_alternatives(PRETRAIN_MODES),
    run=r"[A-Za-z0-9_]+(@[A-Za-z0-9_.]+=[^/]+)?",
    target=r"(dfew|mafw)-fold[1-5]|ferv39k|affectnet7",
    train=_alternatives(TESTSETS),
    test=_alternatives(TESTSETS),
    table=_alternatives(TABLES),
    figure=_alternatives(FIGURES),


def store_table(dataset):
    return f"{STORE}/{dataset}.parquet"


def fresh_if_config_changed(out, digest):
    """Shell prefix: a resumable last.pt written under another config cannot be resumed (the
    engine refuses to mix two experiments), so a job re-run because its config changed drops it;
    one re-run after a crash, under the same config, keeps it and resumes."""
    out = shlex.quote(str(out))
    return (
        f'if [ -f {out}/config.sha256 ] && [ "$(cat {out}/config.sha256)" != {digest} ]; then '
        f"rm -f {out}/last.pt; echo 'config changed: last.pt dropped, starting afresh'; fi; "
    )

