"""The workflow under `--profile slurm` on the real local cluster: its GPU stages run as Slurm
jobs; `scancel` of one fails its rule cleanly; a re-run completes only what is missing; the sweep
targets build Figure 3a/3b from one Slurm job per point.

Uses the small demo variant (tests/workflow_run.SMALL: tiny synthetic data, FERV39K only, one
epoch) so that the whole run stays around two minutes; one CPU and 1 GB per job, so two jobs
share the 2-CPU test node."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from workflow_run import SMALL, SNAKEMAKE, job_counts, overrides_arg, snakemake, workflow_copy

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

OVERRIDES = SMALL + ["launcher.slurm.cpus_per_task=1", "launcher.slurm.mem_gb=1"]


def _jobs_in(workdir: Path, since: str) -> list[tuple[str, str, str]]:
    """(job id, name, state) of the Slurm jobs submitted from `workdir` since `since`."""
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-S", since, "-o", "JobID,JobName,State,WorkDir"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    return [(r[0], r[1], r[2].split()[0]) for r in rows if Path(r[3]) == workdir]


def _running_finetune(workdir: Path) -> str | None:
    out = subprocess.run(["squeue", "-h", "-o", "%i|%j|%T|%Z"], capture_output=True, text=True,
                         timeout=60).stdout  # fmt: skip
    for line in out.splitlines():
        job_id, name, state, cwd = line.split("|")
        if name == "unilearn-finetune" and state == "RUNNING" and Path(cwd) == workdir:
            return job_id
    return None


def test_gpu_stages_run_as_slurm_jobs_and_a_rerun_completes_what_was_cancelled(
    slurm_cluster, tmp_path
):
    workdir = workflow_copy(tmp_path).resolve()
    since = time.strftime("%Y-%m-%dT%H:%M:%S")
    args = ["--profile", "slurm", "results/table1.csv", "--config", overrides_arg(OVERRIDES)]
    first = subprocess.Popen([str(SNAKEMAKE), *args], cwd=workdir, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)  # fmt: skip
    cancelled = None
    deadline = time.monotonic() + 600
    while first.poll() is None and time.monotonic() < deadline:
        cancelled = cancelled or _running_finetune(workdir)
        if cancelled:
            subprocess.run(["scancel", cancelled], check=True, timeout=60)
            break
        time.sleep(0.5)
    output, _ = first.communicate(timeout=900)
    assert cancelled, f"no fine-tuning job seen in squeue:\n{output[-4000:]}"
    assert first.returncode != 0
    assert f"Slurm job {cancelled} failed (state CANCELLED" in output  # the rule's log, shown

    jobs = _jobs_in(workdir, since)
    names = sorted(name for _, name, _ in jobs)
    assert names.count("unilearn-pretrain") == 2  # image+video and video
    assert names.count("unilearn-finetune") == 2  # UniLearn and VideoMAE on FERV39K
    assert (cancelled, "unilearn-finetune", "CANCELLED") in jobs

    plan = job_counts(snakemake(workdir, "-n", *args).output)
    rule = {"finetune": 1} if "finetune" in plan else {"finetune_joint": 1}  # VideoMAE / UniLearn
    assert plan == {**rule, "aggregate": 1, "table": 1, "total": 3}  # the test runs in the job

    snakemake(workdir, *args, timeout=900)
    rerun = [j for j in _jobs_in(workdir, since) if j not in jobs]
    assert sorted(name for _, name, _ in rerun) == ["unilearn-finetune"]
    assert all(state == "COMPLETED" for *_, state in rerun)
    frame = pd.read_csv(workdir / "results" / "table1.csv")
    assert set(frame.method) == {"chance", "VideoMAE", "UniLearn"}
    assert frame.uar.between(0, 100).all()
    assert frame[frame.method != "chance"].config_hash.str.fullmatch(r"[0-9a-f]{64}").all()

    # Sweeps: each point of sweeps.n_experts=[2,4] and sfer_proportion=[0.5,1.0] is its own run.
    figures = ["results/figure3a.png", "results/figure3b.png"]
    counts = job_counts(snakemake(workdir, *args[:2], *figures, *args[3:], timeout=900).output)
    assert counts["finetune_joint"] == 4 and "pretrain" not in counts and "evaluate" not in counts
    sweep_jobs = [j for j in _jobs_in(workdir, since) if j not in jobs + rerun]
    assert sorted(name for _, name, _ in sweep_jobs) == ["unilearn-finetune"] * 4
    for figure in figures:
        pixels = matplotlib.image.imread(workdir / figure)
        assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 50  # a real plot
