# The workflow's plan and the names every rule shares. What each job reads and passes is worked
# out by the package (`unilearn.plan`, tested there); the rules only wire it to `unilearn`.

import os
import sys
import time

from snakemake.exceptions import WorkflowError

from unilearn.plan import Plan, PlanError
from unilearn.plan.commands import CPU_STAGES, GPU_STAGES, line
from unilearn import layout
from unilearn.report import spec

try:
    PLAN = Plan.from_workflow_config(config, python=sys.executable)
except PlanError as error:
    raise WorkflowError(str(error)) from None
CFG = PLAN.cfg
COMMANDS = PLAN.commands

# Rules carry the hash of the config sections they read as a param: Snakemake re-runs a job whose
# params changed, so editing e.g. finetune.epochs redoes the fine-tunings but not pre-training,
# while launcher and wandb (not hashed) never cause a re-run.
CONFIG_HASH = PLAN.config_hash

SYNTH = PLAN.synth
MANIFESTS = PLAN.manifests
STORE = PLAN.store
RUNS = PLAN.runs
LOGS = PLAN.logs
TABLES = spec.TABLES
FIGURES = spec.FIGURES

# W&B: runs are grouped by <config name>/<experiment> (the engines), so a sweep's points sit side
# by side; every run started by this invocation also carries one tag (jobs inherit the variable,
# Slurm jobs too), to find them together.
os.environ.setdefault("WANDB_TAGS", f"workflow-{CFG.name}-{time.strftime('%Y%m%d-%H%M%S')}")

# How each stage starts (`unilearn.plan.commands`): `python -m unilearn STAGE` here, or under
# `launcher: submitit` a Slurm job through the thin submitter `python -m unilearn.launch`. Each is
# a list of shell words, which Snakemake writes joined by single spaces.
UNILEARN = COMMANDS.unilearn
CONFIG_ARGS = COMMANDS.config_args
OVERRIDE_ARGS = COMMANDS.override_args
GPU_STAGE = {stage: COMMANDS.gpu(stage) for stage in GPU_STAGES}
GPU_STAGE_THREADS = COMMANDS.gpu_threads
CPU_STAGE = {stage: COMMANDS.cpu(stage) for stage in CPU_STAGES}
CPU_STAGE_LOCAL_HEAVY = COMMANDS.cpu_local_heavy


wildcard_constraints:
    **PLAN.wildcard_constraints(),
