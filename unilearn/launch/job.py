"""What runs inside the Slurm job: the same `unilearn` stage command, in-process, checkpointable.

On pre-emption or at the time limit submitit calls `checkpoint()`, which resubmits this same
command; the stage then resumes from its own `last.pt` (the engines' resume), so nothing but the
command line needs pickling.
"""

from __future__ import annotations

import importlib
import sys

import submitit
from submitit.helpers import Checkpointable, DelayedSubmission


class StageFailed(RuntimeError):
    """The stage returned a non-zero exit code inside the job."""


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
        try:
            rc = int(function(list(self.argv)) or 0)
        except SystemExit as exit_:
            if self._requeued:  # submitit's own exit after checkpoint(): the job is requeued
                raise
            rc = exit_.code if isinstance(exit_.code, int) else 1  # argparse errors, sys.exit()
        if rc != 0:
            raise StageFailed(f"`{self.describe()}` exited with code {rc}")
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
