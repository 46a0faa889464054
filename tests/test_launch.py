"""The launcher without a Slurm cluster: flags, resource precedence, and submitit's local backend
(same submit / wait / fail / cancel code path as on Slurm, jobs as local subprocesses)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unilearn.config import LauncherConfig, SlurmConfig
from unilearn.launch.resources import add_launcher_arguments, slurm_spec
from unilearn.launch.submit import job_argv, submission_folder

TESTS = Path(__file__).parent


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_launcher_arguments(parser)
    return parser.parse_args(list(argv))


def test_job_runs_the_same_command_with_launcher_local():
    argv = ["--config", "c.yaml", "--launcher", "submitit", "--out", "r", "finetune.lr=1e-3"]
    assert job_argv(argv) == [
        "--launcher",
        "local",
        "--config",
        "c.yaml",
        "--out",
        "r",
        "finetune.lr=1e-3",
    ]
    assert job_argv(["--launcher=submitit", "x=1"]) == ["--launcher", "local", "x=1"]


def test_cli_flags_override_config_resources():
    cfg = {"partition": "gpu", "account": "lab", "cpus_per_task": 8, "mem_gb": 32, "time_min": 600}
    args = _parse("--slurm-partition", "debug", "--slurm-gpus", "4", "--slurm-time-min", "30")
    res = slurm_spec(SlurmConfig(**cfg), args)
    assert (res.partition, res.account, res.cpus_per_task, res.mem_gb) == ("debug", "lab", 8, 32.0)
    # One task (one DDP rank) per GPU.
    assert (res.gpus_per_node, res.tasks_per_node, res.time_min) == (4, 4, 30)
    params = res.submitit_parameters()
    assert params["slurm_partition"] == "debug" and params["gpus_per_node"] == 4
    assert params["tasks_per_node"] == 4 and params["timeout_min"] == 30


def test_config_gpus_per_task_times_tasks_gives_gpus_per_node():
    res = slurm_spec(SlurmConfig(gpus_per_task=1, tasks_per_node=8), _parse())
    assert (res.gpus_per_node, res.tasks_per_node) == (8, 8)
    assert "gpus_per_node" not in slurm_spec(SlurmConfig(), _parse()).submitit_parameters()


def test_time_limit_below_two_minutes_is_refused():
    with pytest.raises(ValueError, match="time_min"):
        slurm_spec(SlurmConfig(), _parse("--slurm-time-min", "1"))


def test_each_submission_gets_its_own_folder(tmp_path):
    args = argparse.Namespace(slurm_folder=None, out=str(tmp_path / "run"))
    first, second = submission_folder(args, "finetune"), submission_folder(args, "finetune")
    assert first != second and first.parent == tmp_path / "run" / "slurm"
    args.out = str(tmp_path / "pred.parquet")  # a file output: logs beside it
    assert submission_folder(args, "evaluate").parent == tmp_path / "slurm"


def test_local_launcher_means_run_here():
    from unilearn.launch.submit import submit_if_requested

    args = argparse.Namespace(launcher=None, stage="finetune", stage_argv=[])
    assert submit_if_requested(args, LauncherConfig(name="local")) is None
    args.launcher = "local"
    assert submit_if_requested(args, LauncherConfig(name="submitit")) is None


def _submit(tmp_path: Path, *stage_args: str, cluster: str = "local") -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    cmd = [sys.executable, str(TESTS / "launch_stage.py"), "submit", "--cluster", cluster]
    cmd += ["--folder", str(tmp_path / "slurm"), "--", "--out", str(tmp_path / "run"), *stage_args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_submitit_local_backend_runs_stage_and_streams_its_output(tmp_path):
    proc = _submit(tmp_path, "--steps", "3")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "launch_stage: done" in out  # the job's stdout, streamed into ours
    assert "submitted `launch_stage:main fake --launcher local" in err
    assert json.loads((tmp_path / "run" / "done.json").read_text())["step"] == 3


def test_submitit_local_backend_failure_shows_log_tail(tmp_path):
    proc = _submit(tmp_path, "--steps", "3", "--fail-at", "2")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 3  # the stage's own exit status, passed through
    assert "failed" in err and "Last lines of" in err
    assert "boom at step 2" in err.split("Last lines of", 1)[1]


def test_sigint_of_submitter_cancels_local_job(tmp_path):
    proc = _submit(tmp_path, "--steps", "600", "--step-s", "0.1")
    last = tmp_path / "run" / "last.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not last.exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT
    assert "cancelled local submitit job" in err
    step = json.loads(last.read_text())["step"]
    time.sleep(1.0)
    assert json.loads(last.read_text())["step"] == step  # the job stopped making progress
    assert not (tmp_path / "run" / "done.json").exists()


def test_multi_task_job_exports_one_rank_per_task(tmp_path, monkeypatch):
    from unilearn.launch.job import StageCommand
    from unilearn.launch.submit import run_as_job

    monkeypatch.setenv("PYTHONPATH", str(TESTS))  # the job imports launch_stage
    command = StageCommand(
        ["fake", "--out", str(tmp_path / "run"), "--steps", "1"], entry="launch_stage:main"
    )
    resources = slurm_spec(SlurmConfig(tasks_per_node=2, cpus_per_task=1, time_min=5), _parse())
    rc = run_as_job(command, tmp_path / "slurm", resources, cluster="local", stream=False)
    assert rc == 0
    ranks = [json.loads((tmp_path / "run" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["RANK"], r["WORLD_SIZE"], r["LOCAL_RANK"]) for r in ranks] == [
        ("0", "2", "0"),
        ("1", "2", "1"),
    ]


def test_thin_submitter_reads_resources_from_config_and_passes_stage_args_verbatim(tmp_path):
    from unilearn.launch.__main__ import parse

    argv = ["finetune", "--config", "c.yaml", "launcher.slurm.partition=gpu", "--slurm-gpus", "2",
            "--", "--config", "c.yaml", "--experiment", "unilearn", "--out", "runs/x@n=2/dfew-fold1",
            "finetune.epochs=3"]  # fmt: skip
    args, stage_argv = parse(argv)
    assert (args.stage, args.config, args.overrides) == (
        "finetune",
        ["c.yaml"],
        ["launcher.slurm.partition=gpu"],
    )
    assert args.slurm_gpus == 2 and args.out == "runs/x@n=2/dfew-fold1"
    assert stage_argv == argv[argv.index("--") + 1 :]
