"""The workflow under `--profile slurm` on the real local cluster: its GPU stages run as Slurm
jobs; `scancel` of one fails its rule cleanly; a re-run completes only what is missing; the sweep
targets build Figure 3a/3b from one Slurm job per point.

Uses the small demo variant (tests/workflow_run.SMALL: tiny synthetic data, FERV39K only, one
epoch) so that the whole run stays around two minutes; one CPU and 1 GB per job, so two jobs
share the 2-CPU test node."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from workflow_run import SMALL, SNAKEMAKE, job_counts, overrides_arg, snakemake, workflow_copy

from unilearn.config import load_config

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
    # the CPU stages ran as Slurm jobs too, one per dataset (the login node only ran synth)
    for stage in ("doctor", "manifest", "preprocess"):
        assert names.count(f"unilearn-{stage}") >= 3, (stage, names)
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
    # the points at the config's own values (n_experts 4, sfer_proportion 0.5) are the run
    # `unilearn`, already trained: only the other two are new jobs
    assert counts["finetune_joint"] == 2 and "pretrain" not in counts and "evaluate" not in counts
    sweep_jobs = [j for j in _jobs_in(workdir, since) if j not in jobs + rerun]
    assert sorted(name for _, name, _ in sweep_jobs) == ["unilearn-finetune"] * 2
    for figure in figures:
        pixels = matplotlib.image.imread(workdir / figure)
        assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 50  # a real plot


def test_preprocess_shards_run_side_by_side_as_slurm_jobs_and_equal_one_run(
    slurm_cluster, tmp_path
):
    workdir = workflow_copy(tmp_path).resolve()
    since = time.strftime("%Y-%m-%dT%H:%M:%S")
    shards = OVERRIDES + ["data.preprocess_shards={voxceleb2: 2}"]
    done = snakemake(workdir, "--profile", "slurm", "data/store/voxceleb2.parquet", "--config",
                     overrides_arg(shards), timeout=900)  # fmt: skip
    assert job_counts(done.output)["preprocess_shard"] == 2
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-S", since, "-o", "JobName,Start,End,State,WorkDir"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    parts = [r.split("|") for r in out.splitlines() if r.startswith("unilearn-preprocess|")]
    parts = [r for r in parts if Path(r[4]) == workdir]
    assert len(parts) == 2 and all(r[3] == "COMPLETED" for r in parts)
    (_, start_a, end_a, *_), (_, start_b, end_b, *_) = parts
    assert max(start_a, start_b) < min(end_a, end_b)  # the two parts ran at the same time

    from unilearn.data.preprocess import PreprocessSettings, preprocess
    from unilearn.data.store import ClipStore

    store = workdir / "data" / "store"
    whole = tmp_path / "whole"
    store_config = load_config(workdir / "configs/demo.yaml").data.store
    settings = PreprocessSettings(
        short_side=store_config.short_side,
        frame_stride=store_config.frame_stride.get("voxceleb2", 1),
        framing=store_config.framing["voxceleb2"],
        codec=store_config.codec.get("voxceleb2", "jpeg"),
    )
    preprocess(
        workdir / "data/manifests/voxceleb2.parquet", whole, settings, workers=0, progress=False
    )
    a, b = (
        pd.read_parquet(whole / "voxceleb2.parquet"),
        pd.read_parquet(store / "voxceleb2.parquet"),
    )
    pd.testing.assert_frame_equal(a.drop(columns="store_key"), b.drop(columns="store_key"))
    ra, rb = ClipStore(whole), ClipStore(store)
    assert all(
        ra.record_bytes(x) == rb.record_bytes(y)
        for x, y in zip(a.store_key, b.store_key, strict=True)
    )


def _alive_jobs(workdir: Path) -> list[str]:
    """`job id state` of the jobs from `workdir` that squeue shows pending, running or completing."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%T|%Z"], capture_output=True, text=True,
                         timeout=60).stdout  # fmt: skip
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    return [f"{i} {s}" for i, s, cwd in rows if Path(cwd) == workdir and s in _ALIVE]


_ALIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED"}


# SIGINT/SIGTERM: Snakemake hands the signal on (workflow/Snakefile, onstart); SIGKILL: each
# waiting launcher sees that the Snakemake above its rule's shell is gone (unilearn.launch.lifeline).
@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["SIGINT", "SIGTERM", "SIGKILL"]
)
def test_signal_sent_to_snakemake_alone_cancels_its_slurm_jobs(slurm_cluster, tmp_path, signum):
    workdir = workflow_copy(tmp_path).resolve()
    args = ["--profile", "slurm", "results/table1.csv", "--config", overrides_arg(OVERRIDES)]
    # its own session: the signal reaches Snakemake only, never a process group (not a Ctrl-C)
    proc = subprocess.Popen([str(SNAKEMAKE), *args], cwd=workdir, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    try:
        _signal_stops_every_job(proc, workdir, signum)
    finally:  # whatever happened, leave no Snakemake, launcher or job behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for job in _alive_jobs(workdir):
            subprocess.run(["scancel", job.split()[0]], timeout=60)


def _signal_stops_every_job(proc: subprocess.Popen, workdir: Path, signum: int) -> None:
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        if any(j.endswith(" RUNNING") for j in _alive_jobs(workdir)):
            break
        time.sleep(0.5)
    running = _alive_jobs(workdir)
    assert running, f"no Slurm job of the workflow seen running:\n{proc.communicate()[0][-4000:]}"
    os.kill(proc.pid, signum)
    stopped = time.monotonic()
    while _alive_jobs(workdir) and time.monotonic() - stopped < 20:
        time.sleep(0.5)
    assert not _alive_jobs(workdir), (
        f"still in squeue 20 s after the signal: {_alive_jobs(workdir)}"
    )
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    # Each job was cancelled (a job already finishing on its own may complete instead); the
    # launcher, orphaned when its rule's shell died of the same signal, may still be writing.
    for job_id in (job.split()[0] for job in running):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            f"cancelled Slurm job {job_id}" in _logs(workdir) or _state(job_id) == "COMPLETED"
        ):
            time.sleep(0.5)
        assert f"cancelled Slurm job {job_id}" in _logs(workdir) or _state(job_id) == "COMPLETED"


def _state(job_id: str) -> str:
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "State"],
                         capture_output=True, text=True, timeout=60).stdout  # fmt: skip
    return out.split()[0] if out.split() else ""


def _logs(workdir: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in workdir.rglob("*.log"))
