"""The sections a training's result does not depend on: where and how a run executes
(`launcher:`, local or Slurm via submitit, per-stage resources and time limits; `wandb:`;
`runtime:`, device, precision, threads, logging; not hashed), and `report:`, how the tables,
figures and pooled metrics state their uncertainty (read by `unilearn aggregate` and `unilearn
tables` only: not in the pre-training or fine-tuning config hash, so changing it re-runs no
training)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator

from unilearn.catalogue import gpu_peak_tflops
from unilearn.config.base import Fraction, NonNegFloat, PositiveInt, Strict, format_errors


class SlurmConfig(Strict):
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpus_per_task: Annotated[int, Field(ge=0)] = 0
    cpus_per_task: PositiveInt = 2
    mem_gb: Annotated[float, Field(gt=0.0)] = 4
    time_min: Annotated[int, Field(ge=2)] = 60  # submitit signals 90 s before the limit
    nodes: PositiveInt = 1
    tasks_per_node: PositiveInt = 1  # one task = one DDP rank (one GPU)
    constraint: str | None = None
    max_requeues: Annotated[int, Field(ge=0)] = 5  # requeues after hitting the time limit


class TimeEstimateConfig(Strict):
    """Default Slurm time limits of GPU stages from the FLOP model (`unilearn.launch.estimate`);
    `launcher.stages.<stage>.time_min` (or `--slurm-time-min`) wins."""

    enabled: bool = True
    # dense bf16 peak of the GPU the jobs run on (the catalogue's table; default the H100 SXM)
    gpu_peak_tflops: Annotated[float, Field(gt=0.0)] = gpu_peak_tflops("H100 SXM")
    mfu: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5  # assumed model FLOP utilisation
    safety: Annotated[float, Field(ge=1.0)] = 2.0
    startup_min: NonNegFloat = 10.0  # queue-independent start: imports, data, first checkpoint
    min_min: Annotated[int, Field(ge=2)] = 20
    max_min: Annotated[int, Field(ge=2)] = 2880  # longer runs requeue at the limit and resume


class LauncherConfig(Strict):
    """Where GPU stages run (`unilearn.launch`; its `--launcher`/`--slurm-*` flags override)."""

    name: Literal["local", "submitit"] = "local"
    slurm: SlurmConfig = SlurmConfig()
    time_estimate: TimeEstimateConfig = TimeEstimateConfig()
    # Per-stage overrides of `slurm` (e.g. pretrain on 8 GPUs, evaluate on 1; the CPU stages
    # doctor, manifest and preprocess on a CPU partition with gpus_per_task 0).
    stages: dict[
        Literal["pretrain", "finetune", "evaluate", "doctor", "manifest", "preprocess"],
        dict[str, Any],
    ] = {}

    @field_validator("stages")
    @classmethod
    def _stage_overrides_are_slurm_keys(cls, v: dict[str, dict[str, Any]]):
        for stage, over in v.items():
            try:
                SlurmConfig(**over)
            except ValidationError as e:
                raise ValueError(f"stages.{stage}: {format_errors(e)}") from None
        return v

    def slurm_for(self, stage: str) -> SlurmConfig:
        """The Slurm resources of one stage: `slurm` updated by `stages[stage]`."""
        return SlurmConfig(**{**self.slurm.model_dump(), **self.stages.get(stage, {})})

    def for_stage(self, stage: str) -> LauncherConfig:
        """This section as seen by one stage (what `launch.submit_if_requested` is given)."""
        return LauncherConfig(name=self.name, slurm=self.slurm_for(stage))


class WandbConfig(Strict):
    # null = the environment decides: WANDB_PROJECT, else "unilearn"
    project: str | None = None
    entity: str | None = None
    # null = the environment decides: WANDB_MODE, else offline (no network needed; `wandb sync`
    # later). `--wandb MODE` on one run wins over both.
    mode: Literal["offline", "online", "disabled"] | None = None


class RuntimeConfig(Strict):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # auto: bf16 autocast on CUDA, fp32 on CPU; fp16 = fp16 autocast with a dynamic grad scaler
    # (the authors' pre-training: torch.cuda.amp, amp_dtype float16)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    threads: PositiveInt | None = None  # torch intra-op threads; null = torch's default
    # a progress line (stdout, the job's log) and a W&B point every this many training steps;
    # not part of the config hash (it changes no result)
    log_every: PositiveInt = 50
    compile: bool = False  # torch.compile the training model (CUDA; first steps compile)


class BootstrapConfig(Strict):
    # resamples of the test clips (within each fold, then pooled) behind every 95% interval and
    # paired comparison (unilearn.report.bootstrap)
    resamples: PositiveInt = 10_000
    confidence: Fraction = 0.95  # of the percentile intervals
    seed: Annotated[int, Field(ge=0)] = 0  # fixed: a table's intervals are reproducible


class ReportConfig(Strict):
    bootstrap: BootstrapConfig = BootstrapConfig()
