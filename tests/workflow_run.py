"""Helpers for the workflow tests: a fresh copy of the workflow, running Snakemake in it, reading
its plan."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
# A small variant of the demo for the tests that run the workflow more than once or on Slurm:
# the tiny synthetic preset, FERV39K only (one split, no folds), one epoch per stage.
SMALL = [
    "data.synthetic=tiny",
    "data.dfer_datasets=[ferv39k]",
    "pretrain.epochs=1",
    "finetune.epochs=1",
    "finetune.warmup_epochs=0",
    # the tiny FERV39K's training split is too small for a 10% hold-out to hold out a clip
    "finetune.selection.validation=null",
    "sweeps.n_experts=[2,4]",
    "sweeps.sfer_proportion=[0.5,1.0]",
]


def workflow_copy(tmp_path: Path) -> Path:
    """The workflow, configs and Slurm profile in a fresh directory (outputs land there)."""
    for part in ("workflow", "configs", "slurm"):
        shutil.copytree(REPO / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def overrides_arg(overrides: list[str]) -> str:
    """`--config` value; each override quoted, since values may hold YAML lists themselves."""
    return "overrides=[" + ",".join(json.dumps(o) for o in overrides) + "]"


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: float = 300):
    """Run Snakemake in `workdir`; `.output` is stdout + stderr (Snakemake 9 logs to stdout)."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run(
        [str(SNAKEMAKE), *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    done.output = done.stdout + done.stderr
    if check and done.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{done.output[-6000:]}")
    return done


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a run or dry run: rule -> number of jobs ({} if nothing to do)."""
    if "Job stats:" not in output:
        return {}
    stats = output.split("Job stats:", 1)[1]
    counts = {}
    for line in stats.splitlines()[3:]:
        match = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if not match:
            break
        counts[match[1]] = int(match[2])
    return counts
