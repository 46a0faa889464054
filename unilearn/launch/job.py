"""What runs inside the Slurm job: the same `unilearn` stage command, in-process, checkpointable.

On pre-emption or at the time limit submitit calls `checkpoint()`, which resubmits this same
command; the stage then resumes from its own `last.pt` (the engines' resume), so nothing but the
command line needs pickling.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
from collections import deque
from typing import Any

import submitit
from submitit.helpers import Checkpointable, DelayedSubmission


class StageFailed(RuntimeError):
    """The stage returned a non-zero exit code inside the job. Its text is
    `exit status N: <the stage's own one-paragraph message>`, which the waiting launcher prints
    and exits with (`unilearn.launch.submit.stage_failure`)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"exit status {status}: {message}")
        self.status = status


class _Tee(io.TextIOBase):
    """Writes to `stream` and keeps the last lines written (the stage's error message)."""

    def __init__(self, stream: Any, keep: int = 20) -> None:
        self.stream = stream
        self.lines: deque[str] = deque(maxlen=keep)
        self._partial = ""

    def write(self, text: str) -> int:
        self.stream.write(text)
        *done, self._partial = (self._partial + text).split("\n")
        self.lines.extend(line for line in done if line.strip())
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def fileno(self) -> int:  # subprocesses and faulthandler write to the real stream
        return self.stream.fileno()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def last_message(self, prefix: str) -> str:
        lines = [*self.lines, self._partial]
        return next((ln for ln in reversed(lines) if ln.startswith(prefix)), "")


class StageCommand(Checkpointable):
    """Run `unilearn ARGV...` (or another `module:function(argv) -> int` entry) in the job."""

    def __init__(self, argv: list[str], entry: str = "unilearn.cli:main") -> None:
        self.argv = list(argv)
        self.entry = entry

    def __call__(self) -> int:
        self._requeued = False
        _export_distributed_env()
        module_name, _, function_name = self.entry.partition(":")
        function = getattr(importlib.import_module(module_name), function_name)
        print(f"unilearn job: running {self.describe()}", file=sys.stderr, flush=True)
        tee = _Tee(sys.stderr)
        try:
            with contextlib.redirect_stderr(tee):
                rc = int(function(list(self.argv)) or 0)
        except SystemExit as exit_:
            if self._requeued:  # submitit's own exit after checkpoint(): the job is requeued
                raise
            rc = exit_.code if isinstance(exit_.code, int) else 1  # argparse errors, sys.exit()
        if rc != 0:
            said = tee.last_message(f"unilearn {self.argv[0]}") if self.argv else ""
            raise StageFailed(rc, said or f"`{self.describe()}` exited with code {rc}")
        return rc

    def checkpoint(self, *args, **kwargs) -> DelayedSubmission:
        self._requeued = True
        print(
            f"unilearn job: requeued; `{self.describe()}` resumes from its last checkpoint",
            file=sys.stderr,
            flush=True,
        )
        return DelayedSubmission(self, *args, **kwargs)

    def describe(self) -> str:
        prefix = "unilearn" if self.entry == "unilearn.cli:main" else self.entry
        return " ".join([prefix, *self.argv])


def _export_distributed_env() -> None:
    """One task per GPU: give torch.distributed its env:// variables (rank, world, master).

    CUDA_VISIBLE_DEVICES is left alone: each rank picks `cuda:LOCAL_RANK`.
    """
    env = submitit.JobEnvironment()
    if env.num_tasks > 1:
        # overwrite: the job inherits the submitter's environment, which may hold stale values.
        submitit.helpers.TorchDistributedEnvironment().export(
            set_cuda_visible_devices=False, overwrite=True
        )
