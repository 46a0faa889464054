"""The launcher's side of faults, without a cluster: it notices when the process that started it
is gone, a stop signal sent to the workflow reaches the processes below it, and a failed job's
message and exit status come back as the stage printed them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from unilearn.launch.lifeline import Lifeline, descendants
from unilearn.launch.submit import stage_failure

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def _wait_for(path: Path, timeout_s: float = 20.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.1)
    raise AssertionError(f"{path} not written within {timeout_s} s")


def test_lifeline_notices_that_the_grandparent_exited(tmp_path):
    # grandparent (python) -> parent (sleep-holding shell) -> watcher; the grandparent exits
    report = tmp_path / "gone.txt"
    watcher = textwrap.dedent(f"""
        import time
        from unilearn.launch.lifeline import Lifeline
        line = Lifeline()
        while not line.gone():
            time.sleep(0.05)
        open({str(report)!r}, "w").write(line.gone())
    """)
    grandparent = textwrap.dedent(f"""
        import subprocess, sys, time
        subprocess.Popen(["bash", "-c", {f'{sys.executable} -c "$0"; sleep 30'!r}, {watcher!r}])
        time.sleep(1.5)
    """)
    subprocess.run([sys.executable, "-c", grandparent], env=ENV, timeout=60, check=True)
    assert "which started this one, exited" in _wait_for(report)


def test_lifeline_of_a_living_lineage_is_not_gone():
    assert Lifeline().gone() == ""


def test_stop_signal_sent_to_the_workflow_alone_reaches_its_grandchildren(tmp_path):
    heard = tmp_path / "heard.txt"
    ready = tmp_path / "ready.txt"
    grandchild = textwrap.dedent(f"""
        import signal, time
        def on_signal(signum, frame):
            open({str(heard)!r}, "w").write(signal.Signals(signum).name)
            raise SystemExit(130)
        signal.signal(signal.SIGINT, on_signal)
        open({str(ready)!r}, "w").write("ready")
        time.sleep(60)
    """)
    workflow = textwrap.dedent(f"""
        import signal, subprocess, sys, time
        from unilearn.launch.lifeline import forward_stop_signals
        # Ctrl-C raises KeyboardInterrupt in Snakemake, even where the test runner was started
        # with SIGINT ignored (a background job of a shell: Python then keeps it ignored)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        forward_stop_signals()
        shell = subprocess.Popen(["bash", "-c", {f'{sys.executable} -c "$0"; true'!r}, {grandchild!r}])
        try:
            shell.wait()
        except KeyboardInterrupt:  # what Snakemake's own SIGINT handling sees
            shell.wait()
            sys.exit(3)
    """)
    proc = subprocess.Popen([sys.executable, "-c", workflow], env=ENV, start_new_session=True)
    try:
        _wait_for(ready)
        os.kill(proc.pid, signal.SIGINT)  # to the workflow process only, not its group
        assert _wait_for(heard) == "SIGINT"
        assert proc.wait(timeout=30) == 3
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_descendants_lists_children_and_grandchildren():
    proc = subprocess.Popen(["bash", "-c", "sleep 30 & wait"])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(descendants(os.getpid())) < 2:
            time.sleep(0.05)
        found = descendants(os.getpid())
        assert proc.pid in found and len(found) >= 2
    finally:
        proc.kill()
        proc.wait()


def test_failed_job_gives_back_the_stage_message_and_status():
    text = (
        "Job (task=0) failed during processing with trace:\n----\nTraceback ...\n"
        "unilearn.launch.job.StageFailed: exit status 2: unilearn finetune: bad input: "
        "c.yaml: unknown key 'epochz'\n"
    )
    assert stage_failure(text) == (2, "unilearn finetune: bad input: c.yaml: unknown key 'epochz'")
    assert stage_failure("sbatch: error: something else") == (1, "")


def test_stage_command_raises_with_the_stage_message(tmp_path, capsys, monkeypatch):
    from unilearn.launch.job import StageCommand, StageFailed

    monkeypatch.setenv("_TEST_CLUSTER_", "debug")  # submitit's own way to run a job in-process

    missing = tmp_path / "fold1.parquet"
    command = StageCommand(["aggregate", str(missing), "--out", str(tmp_path / "a.json")])
    with pytest.raises(StageFailed) as failed:
        command()
    assert failed.value.status == 2
    assert str(failed.value) == (
        f"exit status 2: unilearn aggregate: bad input: {missing}: predictions file not found"
    )
    assert "predictions file not found" in capsys.readouterr().err  # still in the job's log
