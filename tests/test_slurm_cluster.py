"""The test cluster is a real Slurm with accounting: a batch job shows up in squeue and sacct."""

from __future__ import annotations

import subprocess
import time

import pytest

pytestmark = pytest.mark.slurm


def _run(cmd: list[str]) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60).stdout


def test_sbatch_job_runs_and_is_accounted(slurm_cluster, tmp_path):
    out = tmp_path / "hello.out"
    submitted = _run(
        [
            "sbatch",
            "--parsable",
            f"--output={out}",
            "--wrap",
            "echo hello from $SLURM_JOB_ID; sleep 3",
        ]
    )
    job_id = submitted.strip().split(";")[0]
    # Never assume an empty queue: look for our job id only.
    assert job_id in _run(["squeue", "-h", "-o", "%i"]).split()
    state = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = _run(["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "State"]).strip()
        if state == "COMPLETED":
            break
        time.sleep(1)
    assert state == "COMPLETED"
    assert out.read_text().strip() == f"hello from {job_id}"


def test_node_has_cpus_and_memory_per_cpu_default(slurm_cluster):
    # DefMemPerCPU set: a job without --mem must not take the whole node (jobs run side by side).
    config = _run(["scontrol", "show", "config"])
    def_mem = [line for line in config.splitlines() if line.startswith("DefMemPerCPU")]
    assert def_mem and "UNLIMITED" not in def_mem[0]
    node = _run(["sinfo", "-h", "-N", "-o", "%c %m %T"]).split()
    assert int(node[0]) >= 1 and int(node[1]) > 0
