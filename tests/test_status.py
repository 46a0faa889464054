"""`unilearn status` tells, from the files of a runs directory alone, which runs of the DAG are
done, running (epoch e/E, ETA, loss), failed or pending, with their Slurm job."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from unilearn.config import load_config
from unilearn.status import collect, expected_hash, render

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _by_key(rows):
    return {(r.stage, r.run, r.target): r for r in rows}


def test_status_reads_done_running_failed_and_pending_runs(tmp_path):
    cfg = load_config(CONFIGS / "demo.yaml")
    runs = tmp_path / "runs" / "demo"
    done = runs / "finetune" / "unilearn" / "dfew-fold1"
    done.mkdir(parents=True)
    (done / "checkpoint.pt").write_bytes(b"x")
    (done / "log.jsonl").write_text(json.dumps({"epoch": 0, "step": 5, "loss_dfer": 0.5}) + "\n")
    running = runs / "finetune" / "unilearn" / "dfew-fold2"
    running.mkdir(parents=True)
    (running / "progress.json").write_text(json.dumps({
        "state": "running", "epoch": 3, "epochs": 8, "step": 30, "end_step": 80, "eta_s": 600,
        "loss": {"loss_dfer": 1.234}, "updated": time.time(), "host": socket.gethostname(),
        "pid": os.getpid()}))  # fmt: skip
    job = running / "slurm" / "finetune-20260101-000000-abcdef"
    job.mkdir(parents=True)
    (job / "4242_submitted.pkl").write_bytes(b"")
    killed = runs / "finetune" / "unilearn" / "dfew-fold3"
    killed.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (killed / "progress.json").write_text(json.dumps({
        "state": "running", "epoch": 1, "epochs": 8, "eta_s": 100, "loss": {},
        "updated": time.time(), "host": socket.gethostname(), "pid": dead.pid}))  # fmt: skip
    crashed_log = runs / "logs" / "finetune" / "unilearn" / "dfew-fold4.log"
    crashed_log.parent.mkdir(parents=True)
    crashed_log.write_text("Traceback (most recent call last):\n  ...\nValueError: bad\n")

    stale = runs / "finetune" / "unilearn" / "dfew-fold5"  # made under an earlier config
    stale.mkdir(parents=True)
    (stale / "checkpoint.pt").write_bytes(b"x")
    (stale / "config.sha256").write_text("0" * 64 + "\n")

    # a new attempt under this config has begun (config.sha256), the old checkpoint is still there
    restarted = runs / "finetune" / "unilearn" / "mafw-fold1"
    restarted.mkdir(parents=True)
    (restarted / "checkpoint.pt").write_bytes(b"x")
    os.utime(restarted / "checkpoint.pt", (time.time() - 60, time.time() - 60))
    digest = expected_hash(cfg, "finetune", "unilearn", "mafw-fold1")
    (restarted / "config.sha256").write_text(digest + "\n")

    rows = _by_key(collect(cfg, runs, ["table1"]))
    assert rows[("finetune", "unilearn", "mafw-fold1")].state == "pending"
    assert rows[("finetune", "unilearn", "dfew-fold1")].state == "done"
    live = rows[("finetune", "unilearn", "dfew-fold2")]
    assert (live.state, live.epoch, live.loss) == ("running", "3/8", "dfer 1.234")
    assert live.eta in ("10:00", "9:59") and live.job.startswith("4242")
    assert rows[("finetune", "unilearn", "dfew-fold3")].state == "failed"
    assert rows[("finetune", "unilearn", "dfew-fold4")].state == "failed"
    assert rows[("finetune", "unilearn", "dfew-fold5")].state == "pending"
    assert rows[("pretrain", "image+video", "-")].state == "pending"
    assert rows[("test", "unilearn", "dfew-fold1 on dfew")].state == "pending"
    # the test runs inside the fine-tuning job: a job that crashed will not write its predictions
    assert rows[("test", "unilearn", "dfew-fold4 on dfew")].state == "failed"

    text = render(list(rows.values()), show_done=False)
    listed = [line.split()[:3] for line in text.splitlines()]
    assert ["finetune", "unilearn", "dfew-fold1"] not in listed  # done runs are only counted
    assert ["finetune", "unilearn", "dfew-fold2"] in listed
    assert "1 done, 1 running, 3 failed" in text.splitlines()[-1]


def test_status_answers_without_torch(tmp_path):
    code = ("import sys; from unilearn.cli import main; main(['status', '--runs', sys.argv[1], "
            "'--target', 'table1']); assert 'torch' not in sys.modules")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[1], env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "pending" in done.stdout


def _fake_slurm(bin_dir: Path, squeue: str, sacct: str) -> dict[str, str]:
    """`squeue` and `sacct` on PATH that run the given shell lines (and log their calls)."""
    bin_dir.mkdir()
    for name, body in (("squeue", squeue), ("sacct", sacct)):
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\necho {name} >> {bin_dir}/calls\n{body}\n")
        tool.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def _runs_with_jobs(runs: Path, n: int) -> None:
    for fold in range(1, n + 1):
        job = runs / "finetune" / "unilearn" / f"dfew-fold{fold}" / "slurm" / "finetune-1-a"
        job.mkdir(parents=True)
        (job / f"{4240 + fold}_submitted.pkl").write_bytes(b"")


def test_status_answers_within_a_second_when_the_slurm_controller_does_not(tmp_path, monkeypatch):
    cfg = load_config(CONFIGS / "demo.yaml")
    runs = tmp_path / "runs" / "demo"
    _runs_with_jobs(runs, 5)
    env = _fake_slurm(tmp_path / "bin", "sleep 30", "sleep 30")
    monkeypatch.setenv("PATH", env["PATH"])
    start = time.monotonic()
    rows = _by_key(collect(cfg, runs, ["table1"]))
    took = time.monotonic() - start
    assert took < 15, f"status waited {took:.1f} s on a Slurm that does not answer"
    job = rows[("finetune", "unilearn", "dfew-fold2")].job
    assert job == "4242 Slurm not reachable"
    assert (tmp_path / "bin" / "calls").read_text().split() == ["squeue"]  # one query, not per run
    assert "Slurm not reachable" in render(list(rows.values()), show_done=True)


def test_status_asks_slurm_once_for_all_runs(tmp_path, monkeypatch):
    cfg = load_config(CONFIGS / "demo.yaml")
    runs = tmp_path / "runs" / "demo"
    _runs_with_jobs(runs, 3)
    env = _fake_slurm(tmp_path / "bin", "echo '4241 RUNNING'",
                      "printf '4242|COMPLETED\\n4243|FAILED\\n'")  # fmt: skip
    monkeypatch.setenv("PATH", env["PATH"])
    rows = _by_key(collect(cfg, runs, ["table1"]))
    assert rows[("finetune", "unilearn", "dfew-fold1")].job == "4241 RUNNING"
    assert rows[("finetune", "unilearn", "dfew-fold2")].job == "4242 COMPLETED"
    assert rows[("finetune", "unilearn", "dfew-fold3")].job == "4243 FAILED"
    assert rows[("finetune", "unilearn", "dfew-fold3")].state == "failed"
    assert (tmp_path / "bin" / "calls").read_text().split() == ["squeue", "sacct"]
