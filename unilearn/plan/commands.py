"""How each stage of the workflow is started: the `unilearn` command line here, or the thin Slurm
submitter (`python -m unilearn.launch STAGE ... -- STAGE_ARGS`) under `launcher: submitit`, and
the threads, workers and `local_heavy` slot such a job takes on the machine running Snakemake.

Every command piece is a list of shell words (each already quoted), never hand-spaced text. A
rule param is a re-run trigger (Snakemake compares its recorded text), so a piece becomes a param
only through `line`: its words joined by single spaces, one canonical text, the same text the
workflow has always recorded for it (a workflow run before re-runs nothing).
The prefixes end where a rule's own arguments begin: `{prefix} --config ... --out ...`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from unilearn import layout

GPU_STAGES = ("pretrain", "finetune")  # the workflow's GPU jobs (the test runs inside finetune)
CPU_STAGES = ("doctor", "manifest", "preprocess")

Words = list[str]  # shell words, each quoted where it needs to be


def line(words: Words) -> str:
    """A command piece as a rule param: its words joined by single spaces (see the module doc)."""
    return " ".join(words)


@dataclass(frozen=True)
class StageCommands:
    """`python` is the interpreter running Snakemake (rules need no activated environment);
    `configs`/`overrides` the workflow's unilearn config; `launcher` local or submitit;
    `logs` the runs' log folder (the CPU stages' Slurm logs go under it); `threads` the
    config's torch threads (`runtime.threads`)."""

    python: str
    configs: tuple[str, ...]
    overrides: tuple[str, ...]
    launcher: str
    submitit_cluster: str
    logs: str
    threads: int | None

    @property
    def submitted(self) -> bool:
        return self.launcher == "submitit"

    @property
    def unilearn(self) -> Words:
        """`python -m unilearn`: the stages that always run here (synth, aggregate, tables)."""
        return [shlex.quote(self.python), "-m", "unilearn"]

    @property
    def config_args(self) -> Words:
        return [word for path in self.configs for word in ("--config", shlex.quote(path))]

    @property
    def override_args(self) -> Words:
        return [shlex.quote(o) for o in self.overrides]

    def _submitter(self, stage: str) -> Words:
        """`python -m unilearn.launch STAGE <configs> <overrides> --submitit-cluster X` (the
        `--` that starts the stage's own arguments is added by the caller). The submitter does
        not import the stage: it waits in ~40 MB instead of the ~800 MB of torch and friends, so
        many folds can wait side by side on a login node."""
        return [shlex.quote(self.python), "-m", "unilearn.launch", stage, *self.config_args,
                *self.override_args, "--submitit-cluster", self.submitit_cluster]  # fmt: skip

    def gpu(self, stage: str) -> Words:
        """The prefix of a GPU stage: here with `--launcher local`, or as a Slurm job."""
        if self.submitted:
            return [*self._submitter(stage), "--"]
        return [*self.unilearn, stage, "--launcher", "local"]

    def here(self, stage: str) -> Words:
        """`python -m unilearn STAGE`: a stage started in this process, whatever the launcher."""
        return [*self.unilearn, stage]

    def cpu(self, stage: str) -> Words:
        """The prefix of a CPU stage: here, or as a Slurm CPU job with the job's CPUs as its
        workers (`launcher.stages.<stage>`) and its job logs under LOGS/slurm/<stage>
        (`layout.slurm_logs`: the doctor has no --out beside which they would go)."""
        if self.submitted:
            folder = shlex.quote(str(layout.slurm_logs(self.logs, stage)))
            # The empty words keep the text this prefix has always had ("X  --slurm-folder F -- ")
            return [*self._submitter(stage), "", "--slurm-folder", folder, "--", ""]
        return self.here(stage)

    @property
    def gpu_threads(self) -> int:
        """A GPU stage run here uses the config's torch threads; submitted, it only waits."""
        return 1 if self.submitted else (self.threads or 1)

    @property
    def cpu_local_heavy(self) -> int:
        """A submitted CPU stage only waits here: no `local_heavy` slot."""
        return 0 if self.submitted else 1

    def cpu_threads(self, n: int) -> int:
        return 1 if self.submitted else n

    def cpu_workers(self, threads: int) -> Words:
        """`--workers N` for a CPU stage run here (its Snakemake threads); none for a Slurm
        job, whose stage defaults to the CPUs Slurm gave it."""
        return [] if self.submitted else ["--workers", str(threads)]
