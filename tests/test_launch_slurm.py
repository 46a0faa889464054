"""`--launcher submitit` on the real local Slurm: the stage runs as a job, a failure surfaces with
the log's tail, stopping the submitter cancels the job, and a pre-empted job requeues and resumes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

TESTS = Path(__file__).parent


def _submit(tmp_path: Path, *stage_args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(TESTS))  # the job imports tests/launch_stage.py
    cmd = [sys.executable, str(TESTS / "launch_stage.py"), "submit", "--cluster", "slurm"]
    cmd += ["--folder", str(tmp_path / "slurm"), "--", "--out", str(tmp_path / "run"), *stage_args]
    return subprocess.Popen(
        cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _sacct_state(job_id: str) -> str:
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "State"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return out.strip().split()[0] if out.strip() else ""


def _wait_for(predicate, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout_s} s")


def _job_id_from(stderr_line: str) -> str:
    return re.search(r"as Slurm job (\d+)", stderr_line).group(1)


def _read_until_submitted(proc: subprocess.Popen) -> str:
    """Read the submitter's stderr until it names its job; the job id is printed at once."""
    for line in proc.stderr:
        if "as Slurm job" in line:
            return _job_id_from(line)
    raise AssertionError(f"submitter exited without naming a job (rc {proc.wait()})")


def test_stage_runs_as_slurm_job_and_streams_its_log(slurm_cluster, tmp_path):
    proc = _submit(tmp_path, "--steps", "3")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    job_id = _job_id_from(err)
    assert _sacct_state(job_id) == "COMPLETED"
    assert "launch_stage: done" in out  # streamed from the job's stdout log
    assert re.search(rf"unilearn: log .*/{job_id}_0_log\.err", err)
    assert json.loads((tmp_path / "run" / "done.json").read_text())["step"] == 3


def test_failed_job_fails_with_the_tail_of_its_log(slurm_cluster, tmp_path):
    proc = _submit(tmp_path, "--steps", "3", "--fail-at", "1")
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 3  # the stage's own exit status, passed through
    job_id = _job_id_from(err)
    assert f"Slurm job {job_id} failed (state FAILED)" in err
    assert "boom at step 1" in err.split("Last lines of", 1)[1]
    assert _sacct_state(job_id) == "FAILED"


def test_sigterm_of_submitter_cancels_its_slurm_job(slurm_cluster, tmp_path):
    proc = _submit(tmp_path, "--steps", "1000", "--step-s", "0.2")
    job_id = _read_until_submitted(proc)
    _wait_for(lambda: (tmp_path / "run" / "last.json").exists())  # the job is running
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert f"cancelled Slurm job {job_id}" in err
    _wait_for(lambda: _sacct_state(job_id) == "CANCELLED", timeout_s=60)


def test_external_scancel_fails_the_submitter_cleanly(slurm_cluster, tmp_path):
    proc = _submit(tmp_path, "--steps", "1000", "--step-s", "0.2")
    job_id = _read_until_submitted(proc)
    _wait_for(lambda: (tmp_path / "run" / "last.json").exists())
    subprocess.run(["scancel", job_id], check=True, timeout=60)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert f"Slurm job {job_id} failed (state CANCELLED" in err


def test_preempted_job_is_requeued_and_resumes_from_its_checkpoint(slurm_cluster, tmp_path):
    proc = _submit(tmp_path, "--steps", "10", "--step-s", "0.5")
    job_id = _read_until_submitted(proc)
    last = tmp_path / "run" / "last.json"
    _wait_for(lambda: last.exists() and json.loads(last.read_text())["step"] >= 2)
    # What Slurm sends before pre-empting a job (submitit's Job._interrupt does the same).
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=60)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    starts = json.loads((tmp_path / "run" / "done.json").read_text())["starts"]
    assert len(starts) == 2 and starts[0] == 0 and starts[1] >= 2  # resumed, not restarted
    assert "requeued" in err and _sacct_state(job_id) == "COMPLETED"


def test_job_requeued_from_outside_is_waited_for_and_resumes(slurm_cluster, tmp_path):
    proc = _submit(tmp_path, "--steps", "12", "--step-s", "0.5")
    job_id = _read_until_submitted(proc)
    last = tmp_path / "run" / "last.json"
    _wait_for(lambda: last.exists() and json.loads(last.read_text())["step"] >= 2)
    # What an administrator or a pre-emption with requeue does: the running job goes back to
    # PENDING under the same id, then runs again.
    subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=60)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "failed" not in err and f"Slurm job {job_id} completed" in err
    starts = json.loads((tmp_path / "run" / "done.json").read_text())["starts"]
    assert len(starts) == 2 and starts[0] == 0 and starts[1] >= 2  # resumed, not restarted
    assert _sacct_state(job_id) == "COMPLETED"
