"""Submit a stage as a Slurm job through submitit, stream its log, wait, and own its lifetime.

submitit submits and waits, but does not cancel the job when the submitting process is stopped
(nor does Snakemake), and only re-checks a long job's Slurm state every few minutes. This module
adds both: SIGINT/SIGTERM/SIGHUP cancel the job, and so does the end of the process that started
this one (`lifeline.Lifeline`: Snakemake killed outright); the state is forced every `poll_s`.
A job requeued by Slurm (pre-emption, `scontrol requeue`) is the same job: waiting goes on.
While it waits, the job's log files are followed into ours (`LogFollower`, like `tail -f`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import submitit
from submitit.slurm.slurm import SlurmJob

from unilearn.launch.lifeline import Lifeline
from unilearn.launch.resources import SlurmSpec, slurm_spec
from unilearn.layout import SLURM_DIR

if TYPE_CHECKING:
    from unilearn.config import LauncherConfig

TAIL_LINES = 40
CANCEL_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def submit_if_requested(
    args: argparse.Namespace, launcher: LauncherConfig, entry: str = "unilearn.cli:main"
) -> int | None:
    """Run the stage as a Slurm job if asked to; None means "run it here".

    `args` is the stage's parsed namespace (with `stage` and `stage_argv` set by `unilearn.cli`);
    `launcher` is the config's `launcher` section as the stage sees it (`for_stage`). The job
    runs `entry([stage, *stage_argv, "--launcher", "local"])`, i.e. `unilearn STAGE ...`.
    """
    name = args.launcher or launcher.name
    if name == "local":
        return None
    if name != "submitit":
        raise ValueError(f"launcher.name / --launcher = {name!r}: expected 'local' or 'submitit'")
    resources = slurm_spec(launcher.slurm, args)
    from unilearn.launch.job import StageCommand

    command = StageCommand([args.stage, *job_argv(args.stage_argv)], entry=entry)
    folder = submission_folder(args, args.stage)
    return run_as_job(
        command,
        folder,
        resources,
        cluster=getattr(args, "submitit_cluster", "slurm"),
        stream=not getattr(args, "slurm_quiet", False),
    )


def job_argv(stage_argv: list[str]) -> list[str]:
    """The stage's own argv with `--launcher local` in place of any `--launcher X`."""
    argv: list[str] = []
    skip = False
    for arg in stage_argv:
        if skip:
            skip = False
            continue
        if arg == "--launcher":
            skip = True
            continue
        if arg.startswith("--launcher="):
            continue
        argv.append(arg)
    return ["--launcher", "local", *argv]


def submission_folder(args: argparse.Namespace, stage: str) -> Path:
    """A fresh folder per submission (job ids restart when a cluster is reset; a reused folder
    could hand back an old job's result). Base: --slurm-folder, else `slurm/` beside --out."""
    base = getattr(args, "slurm_folder", None)
    if base is None:
        out = getattr(args, "out", None)
        if out:
            out = Path(out)
            base = (out.parent if out.suffix else out) / SLURM_DIR
        else:
            base = Path("slurm_logs")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(base) / f"{stage}-{stamp}-{secrets.token_hex(3)}"


def run_as_job(
    command: Any,
    folder: str | os.PathLike,
    resources: SlurmSpec,
    cluster: str = "slurm",
    stream: bool = True,
    poll_s: float = 15.0,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Submit `command` (a picklable callable), wait for it, return 0 or a non-zero exit code.

    Prints the job id and log paths at once; streams the job's stdout/stderr into ours; on
    SIGINT/SIGTERM/SIGHUP cancels the job and returns 128 + signal; on failure prints the tail
    of the job's log and returns 1.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    if cluster not in ("slurm", "local"):
        raise ValueError(f"--submitit-cluster = {cluster!r}: expected 'slurm' or 'local'")
    # How often a timed-out job is requeued is a constructor argument, not a parameter.
    executor = submitit.AutoExecutor(
        folder=folder, cluster=cluster, **{f"{cluster}_max_num_timeout": resources.max_requeues}
    )
    params = resources.submitit_parameters()
    if cluster == "local":  # Slurm-only keys would be warned about and ignored
        params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
    executor.update_parameters(**params)
    what = command.describe() if hasattr(command, "describe") else repr(command)
    kind = "Slurm job" if cluster == "slurm" else "local submitit job"
    job = None
    lifeline = Lifeline()
    try:
        with _cancel_on_signals() as guard:
            job = executor.submit(command)
            guard.armed()  # a signal that came during sbatch is handled now, with a job id
            lead = job.task(0)
            print(
                f"unilearn: submitted `{what}` as {kind} {job.job_id} ({resources.describe()})\n"
                f"unilearn: log {lead.paths.stderr}\nunilearn: out {lead.paths.stdout}",
                file=err,
                flush=True,
            )
            follower = (
                LogFollower({lead.paths.stdout: out, lead.paths.stderr: err}) if stream else None
            )
            _wait(job, follower, poll_s, err, kind, lifeline)
            try:
                if _ended_without_result(job):
                    raise submitit.core.utils.UncompletedJobError(job.job_id)
                job.results()
            except (
                submitit.core.utils.FailedJobError,
                submitit.core.utils.UncompletedJobError,
            ) as failure:
                state = _state(job)
                _wait_until_gone(job, err)
                status, said = stage_failure(str(failure))
                print(
                    f"unilearn: {kind} {job.job_id} failed (state {state}). "
                    f"Last lines of {lead.paths.stderr}:\n"
                    f"{tail(lead.paths.stderr, TAIL_LINES) or tail(lead.paths.stdout, TAIL_LINES)}",
                    file=err,
                    flush=True,
                )
                if said:  # the stage's own message, last, as a local run prints it
                    print(said, file=err, flush=True)
                return status
            print(f"unilearn: {kind} {job.job_id} completed", file=err, flush=True)
            return 0
    except _Interrupted as interrupted:
        why = interrupted.reason or f"{signal.Signals(interrupted.signum).name} received"
        if job is not None:
            job.cancel(check=False)
            _wait_until_gone(job, err)
            print(f"unilearn: {why}: cancelled {kind} {job.job_id}", file=err, flush=True)
        return 128 + interrupted.signum


class LogFollower:
    """Copies what was appended to each file since the last `pump()` into its stream.

    Files may not exist yet (the job is pending) and may be appended to after a requeue.
    """

    def __init__(self, targets: dict[os.PathLike, TextIO]) -> None:
        self._targets = {Path(p): stream for p, stream in targets.items()}
        self._offsets = {p: 0 for p in self._targets}

    def pump(self) -> None:
        for path, stream in self._targets.items():
            try:
                with open(path, "rb") as f:
                    f.seek(self._offsets[path])
                    chunk = f.read()
            except FileNotFoundError:
                continue
            if chunk:
                self._offsets[path] += len(chunk)
                stream.write(chunk.decode("utf-8", errors="replace"))
                stream.flush()


def tail(path: os.PathLike, n_lines: int) -> str:
    """The last `n_lines` lines of a text file ("" when it does not exist)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(deque(f, maxlen=n_lines))
    except FileNotFoundError:
        return ""


def stage_failure(text: str) -> tuple[int, str]:
    """(exit status, the stage's one-paragraph message) from a failed job's error text: the
    `StageFailed` raised in the job (`unilearn.launch.job`) carries both; else (1, "")."""
    found = re.findall(r"StageFailed: exit status (\d+): (.*)", text)
    if not found:
        return 1, ""
    status, said = found[-1]
    return int(status), said.strip()


def _wait(
    job: Any,
    follower: LogFollower | None,
    poll_s: float,
    err: TextIO,
    kind: str,
    lifeline: Lifeline | None = None,
) -> None:
    """Until the job has a result or Slurm says it ended; reports state changes. Raises
    `_Interrupted` when the process that started this one is gone."""
    last_forced = time.monotonic()
    last_state = None
    while True:
        if follower:
            follower.pump()
        gone = lifeline.gone() if lifeline else ""
        if gone:
            raise _Interrupted(signal.SIGHUP, gone)
        slurm = isinstance(job, SlurmJob)
        if slurm and time.monotonic() - last_forced >= poll_s:
            last_forced = time.monotonic()
            job.get_info(mode="force")  # notice an external scancel within poll_s
        if _finished(job) if slurm else job.done():
            break
        # Slurm: the state cached by the last sacct call; local: the subprocess's state.
        state = job.watcher.get_state(job.job_id, mode="cache") if slurm else job.state
        if state != last_state and state != "UNKNOWN":
            again = " (the same job, to run again: waiting)" if state in _REQUEUED else ""
            print(f"unilearn: {kind} {job.job_id} {state}{again}", file=err, flush=True)
            last_state = state
        time.sleep(1.0)
    if follower:
        time.sleep(0.5)  # let the file system show the job's last lines
        follower.pump()


# Slurm states after which no result will ever appear: no need for submitit's 15-s wait for one.
_FINAL_WITHOUT_RESULT = (
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "DEADLINE",
    "BOOT_FAIL",
)


# squeue states in which the job's processes may still run (COMPLETING: being killed)
_STILL_ALIVE = {
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING",
    "STAGE_OUT", "RESIZING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
}  # fmt: skip


_REQUEUED = {"REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "PREEMPTED"}


def _finished(job: Any) -> bool:
    """A result on disk, or a Slurm state after which the job never runs again. submitit's own
    `done()` takes every state outside a short list for the end (REQUEUE_HOLD, SUSPENDED, ...);
    a requeued or held job is the same job and resumes from its checkpoint: keep waiting."""
    if any(t.paths.result_pickle.exists() for t in _tasks(job)):
        return True
    job.watcher.update_if_long_enough(mode="standard")
    state = job.watcher.get_state(job.job_id, mode="cache").split()[0]
    return state not in _STILL_ALIVE | _REQUEUED | {"UNKNOWN", "READY"}


def _wait_until_gone(job: Any, err: TextIO, timeout_s: float = 180.0) -> None:
    """Return once `squeue` no longer shows the job pending, running or completing (unknown,
    or kept in a final state for MinJobAge), at most after `timeout_s`.

    sacct says CANCELLED as soon as scancel is issued, but the job's processes live on until
    they exit or Slurm's KillWait ends (submitit's job side ignores SIGTERM): a fine-tuning near
    its end could still write checkpoint.pt after our caller (Snakemake) removed the failed
    rule's outputs, and the re-run would then take the cancelled job's output as done.
    """
    if not isinstance(job, SlurmJob):
        return
    deadline = time.monotonic() + timeout_s
    announced = False
    while time.monotonic() < deadline:
        try:
            listed = subprocess.run(
                ["squeue", "--noheader", "--jobs", str(job.job_id), "--format", "%T"],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return  # no squeue here: nothing to wait with
        states = set(listed.stdout.split()) if listed.returncode == 0 else set()
        if not states & _STILL_ALIVE:
            return  # unknown to squeue, or listed in a final state (kept for MinJobAge)
        if not announced:
            print(f"unilearn: waiting for Slurm job {job.job_id} to end "
                  f"({', '.join(sorted(states))})", file=err, flush=True)  # fmt: skip
            announced = True
        time.sleep(1.0)
    print(f"unilearn: Slurm job {job.job_id} still listed after {timeout_s:.0f} s", file=err)


def _ended_without_result(job: Any) -> bool:
    if not isinstance(job, SlurmJob) or any(t.paths.result_pickle.exists() for t in _tasks(job)):
        return False
    state = job.watcher.get_state(job.job_id, mode="cache")
    return state.startswith(_FINAL_WITHOUT_RESULT)


def _tasks(job: Any) -> list:
    return [job.task(i) for i in range(job.num_tasks)]


def _state(job: Any) -> str:
    try:
        info = job.get_info(mode="force")
        return info.get("State") or info.get("jobState") or "UNKNOWN"
    except Exception:  # a dead scheduler must not hide the job's own error
        return "UNKNOWN"


class _Interrupted(BaseException):
    """A BaseException, like KeyboardInterrupt: the signal can arrive while submitit polls
    sacct, and submitit's `except Exception` around that call would swallow an Exception (it
    printed "Bypassing sacct error 15" and the submitter kept waiting on a job it never cancelled).
    """

    def __init__(self, signum: int, reason: str = "") -> None:
        super().__init__(signum)
        self.signum = signum
        self.reason = reason


class _SignalGuard:
    """Turns SIGINT/SIGTERM/SIGHUP into `_Interrupted`; until `armed()`, only remembers them.

    Deferring (rather than blocking the signals) matters: a blocked mask would be inherited by
    the processes submitit spawns, and a local job could then never be cancelled.
    """

    def __init__(self) -> None:
        self.pending: int | None = None
        self._armed = False

    def handle(self, signum: int, frame: Any) -> None:
        if not self._armed:
            self.pending = signum
            return
        raise _Interrupted(signum)

    def armed(self) -> None:
        self._armed = True
        if self.pending is not None:
            raise _Interrupted(self.pending)


@contextlib.contextmanager
def _cancel_on_signals() -> Iterator[_SignalGuard]:
    guard = _SignalGuard()
    previous = {sig: signal.signal(sig, guard.handle) for sig in CANCEL_SIGNALS}
    try:
        yield guard
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
