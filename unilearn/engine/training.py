"""One training run, set up and run the same way by both stages (the setup MAE writes in both
`main_pretrain.py` and `main_finetune.py`, written once): `TrainingRun(...)` before the model
(the config hash, the ranks, the run directory, the seed of the initial weights), `start` once
the stage has its model and data (optimiser, lr schedule, step context, resume from `last.pt`,
DDP, W&B, the `last.pt` saves, the progress report), then `train`, the epoch loop. The stage
keeps its own `train_one_epoch` and `train_step` (its loss); the loop calls the first on each
epoch's batches and, after each epoch, the stage's `after_epoch` (fine-tuning: its tests).

What a run keeps of each epoch (one line of `log.jsonl`, an entry of `last.pt`'s history, a W&B
point): its running loss sums (`EpochSums`), the share of time spent waiting for data
(`StepTimer`) and the record itself (`epoch_record`: losses averaged over ranks, lr, throughput).
No host-device sync per step: the losses are summed on the device and read every
`runtime.log_every` steps (`unilearn.progress`) and at the epoch end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from unilearn.config import config_hash, save_resolved
from unilearn.engine import distributed as D
from unilearn.engine.checkpointing import Checkpoints, CheckpointSchedule
from unilearn.engine.loader import check_epoch_ended, rest_of_epoch
from unilearn.engine.optim import build_optimizer
from unilearn.engine.schedule import build_schedule, global_batch
from unilearn.engine.step import step_context
from unilearn.engine.train_state import RunFiles, seed_everything, seed_training
from unilearn.engine.wandb_log import run_for
from unilearn.launch import restart
from unilearn.layout import CHECKPOINT_NAME
from unilearn.models import save_checkpoint
from unilearn.progress import Progress


class WandbNames(NamedTuple):
    """A run's W&B group and name, and what its W&B config records of it (`run_for`'s
    `group`, `name`, `identity`)."""

    group: str
    name: str
    identity: dict[str, Any]


class TrainingRun:
    """One training run of a stage (`pretrain`, `finetune`) into the run directory `out`; `cfg` is
    the run's config (a fine-tuning's: its experiment's, with `experiment` the resolved one).

    Made before the model: the config hash (and `--restart-if-config-changed`), the ranks and
    threads, the run directory and its `config.yaml`, then the seed of the initial weights (the
    same on every rank; DDP also broadcasts them). `start` builds the rest, `train` runs it."""

    def __init__(
        self,
        cfg,
        stage: str,
        out: Path,
        experiment=None,
        *,
        wandb_mode: str | None,
        progress: bool,
        restart_if_config_changed: bool,
    ) -> None:
        self.cfg, self.stage, self.out = cfg, stage, Path(out)
        self.wandb_mode, self.progress = wandb_mode, progress
        self.digest = config_hash(cfg, stage, experiment)
        if restart_if_config_changed:
            restart.restart_if_config_changed(self.out, self.digest)
        self.info = D.init_distributed(cfg.runtime.device)
        D.set_threads(cfg.runtime.threads)
        self.files = RunFiles(self.out, self.info)
        if self.info.is_main:
            save_resolved(cfg, self.out, stage, experiment)
        seed_everything(cfg.seed)

    def start(
        self,
        model: torch.nn.Module,
        data,
        section,
        *,
        param_groups: dict[str, Any],
        identity: dict[str, Any],
        meta: dict[str, Any],
        wandb: WandbNames,
        desc: str,
        find_unused_parameters: bool,
    ) -> None:
        """The run of `model` on `data` (the stage's training set: `steps_per_epoch()` and
        `batches(start, end, seed)`, `unilearn.engine.loader`) by `section` (`cfg.pretrain` /
        `cfg.finetune`: epochs, batch, lr schedule, AdamW, clipping, `last.pt` saves): AdamW
        (`param_groups`: the stage's layer decay or no-decay rule), its schedule, the steps'
        context, the resume from `last.pt` (refused when it belongs to another `identity`), DDP,
        the W&B run, the saves (with `meta`, the checkpoints' meta) and the progress report
        (`desc`)."""
        cfg, info = self.cfg, self.info
        self.model, self.data, self.meta = model, data, meta
        self.steps_per_epoch = data.steps_per_epoch()
        total_steps = section.epochs * self.steps_per_epoch
        self.end_step = min(total_steps, section.max_steps or total_steps)
        batch = global_batch(section, info.world_size)
        self.schedule = build_schedule(section, batch, self.steps_per_epoch)
        optimizer = build_optimizer(
            model, self.schedule.base_lr, section.weight_decay, section.betas, **param_groups
        )
        self.ctx = step_context(
            optimizer, self.schedule, info, cfg.runtime, section.clip_grad, self.files
        )

        # resume: from where RUN/last.pt left off, if there is one
        self.state = self.files.resume(model, optimizer, self.ctx.scaler, self.digest, identity)
        self.step, self.history, self.sums = resume_position(self.state)
        self.ddp = D.wrap(model, info, find_unused_parameters, compile=cfg.runtime.compile)
        names = wandb._asdict() | {"job_type": self.stage, "mode": self.wandb_mode}
        wandb_run = run_for(cfg, run_dir=self.out, is_main=info.is_main, **names)
        when = CheckpointSchedule(
            section.checkpoint_every,
            section.checkpoint_minutes,
            cfg.runtime.log_every,
            self.end_step,
            info,
        )
        self.checkpoints = Checkpoints(
            self.files,
            when,
            self.steps_per_epoch,
            model=model,
            optimizer=optimizer,
            scaler=self.ctx.scaler,
            config_hash=self.digest,
            meta=meta,
            identity=identity,
            history=self.history,
        )
        self.report = Progress(
            desc=desc,
            stage=self.stage,
            run_dir=self.out,
            start_step=self.step,
            end_step=self.end_step,
            steps_per_epoch=self.steps_per_epoch,
            every=cfg.runtime.log_every,
            schedule=self.schedule,
            wandb=wandb_run,
            model=model,
            is_main=info.is_main,
            bar=self.progress,
        )

    def after_step(self, step: int, sums: EpochSums, label: dict[str, str]) -> None:
        """After optimiser step `step`: `last.pt` when due (or at once on a signal), the progress
        report (`label`: the batch's task or modality), and every `runtime.log_every` steps the
        NaN guard, on every rank together."""
        self.checkpoints.after_step(step, sums)
        self.report.step(step, sums, label)
        if step % self.ctx.log_every == 0:
            self.ctx.finite.check(self.ctx.dist)

    def train(
        self,
        train_one_epoch: Callable[..., tuple[int, EpochSums, dict[str, float]]],
        after_epoch: Callable[[int, int, dict], dict] | None = None,
        at_end: Callable[[dict], dict] | None = None,
    ) -> dict[str, Any]:
        """The epochs, from the resumed step on: `train_one_epoch(run, batches, step, sums) ->
        (step, sums, timing)` on each epoch's (rest of its) batches, its record (with the fields
        of `after_epoch(epoch, step, record)`, before `last.pt` keeps the record), `last.pt`;
        then the final `checkpoint.pt`, `at_end(final)`'s summary fields and the report's end.
        Returns the final epoch's record."""
        cfg, step, sums, per_epoch = self.cfg, self.step, self.sums, self.steps_per_epoch
        seed_training(cfg.seed, self.info.rank, self.state)
        try:
            with self.checkpoints, self.data.batches(step, self.end_step, seed=cfg.seed) as batches:
                while step < self.end_step:
                    epoch = step // per_epoch
                    rest = rest_of_epoch(batches, step, self.end_step, per_epoch)
                    step, sums, timing = train_one_epoch(self, rest, step, sums)
                    check_epoch_ended(step, self.end_step, per_epoch)
                    record = epoch_record(
                        epoch, step, self.schedule(step - 1), sums, timing, self.info
                    )
                    if after_epoch is not None:
                        record |= after_epoch(epoch, step, record)
                    self.history.append(record)
                    sums = EpochSums()
                    self.checkpoints.at_epoch_end(step, sums)
                    self.report.epoch_end(record)

                final = self.checkpoints.save_final(self.out / CHECKPOINT_NAME["last"])
                summary = at_end(final) if at_end is not None else {}
                self.report.finished("done", final, summary)
                self.checkpoints.deliver()  # a signal after the last step: the run is complete
        except BaseException:
            self.report.finished("failed")
            raise
        finally:
            D.cleanup(self.info)
        return final

    def save_untrained(self, model: torch.nn.Module, meta: dict[str, Any]) -> dict[str, Any]:
        """No training: the initial weights are the run's `checkpoint.pt` (rank 0)."""
        if self.info.is_main:
            save_checkpoint(self.out / CHECKPOINT_NAME["last"], model, {**meta, "train": {}})
        D.cleanup(self.info)
        return {}


def resume_position(state: dict[str, Any] | None) -> tuple[int, list[dict], EpochSums]:
    """(step, epoch records so far, running sums of the epoch in progress): from a resumed
    `last.pt`, or (0, [], empty) for a fresh run."""
    if not state:
        return 0, [], EpochSums()
    extra = state["extra"]
    return state["step"], extra["history"], EpochSums.from_state(extra["sums"])


# -- what a run keeps of each epoch ------------------------------------------------------------


@dataclass
class EpochSums:
    """Running sums of one epoch (saved in `last.pt`, so a resumed epoch reports the same means).

    `add` takes the step's loss tensors as they are (on the device) and sums them there in
    float64: no host sync per step, and the same numbers as summing their `.item()` values in
    Python floats (float32 -> float64 is exact, and the additions are the same float64 ones).
    `means()` / `state_dict()` read them (one sync)."""

    loss: dict[str, float | torch.Tensor] = field(default_factory=dict)  # per task / modality
    batches: dict[str, int] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=dict)
    aux: float | torch.Tensor = 0.0
    steps: int = 0

    def add(self, task: str, loss, aux, n: int) -> None:
        self.loss[task] = self.loss.get(task, 0.0) + _as_float64(loss)
        self.batches[task] = self.batches.get(task, 0) + 1
        self.samples[task] = self.samples.get(task, 0) + n
        self.aux = self.aux + _as_float64(aux)
        self.steps += 1

    def _read(self) -> tuple[dict[str, float], float]:
        keys = sorted(self.loss)
        values = [self.loss[k] for k in keys] + [self.aux]
        tensors = [v for v in values if isinstance(v, torch.Tensor)]
        if tensors:  # one device-to-host copy for all of them
            host = iter(torch.stack([t.detach().double() for t in tensors]).cpu().tolist())
            values = [next(host) if isinstance(v, torch.Tensor) else float(v) for v in values]
        return dict(zip(keys, values[:-1])), float(values[-1])

    def means(self) -> dict[str, float]:
        loss, aux = self._read()
        out = {f"loss_{t}": loss[t] / self.batches[t] for t in sorted(loss)}
        out["aux_loss"] = aux / max(self.steps, 1)
        for t in sorted(self.samples):
            out[f"samples_{t}"] = float(self.samples[t])
        return out

    def state_dict(self) -> dict:
        loss, aux = self._read()
        return {
            "loss": loss,
            "batches": dict(self.batches),
            "samples": dict(self.samples),
            "aux": aux,
            "steps": self.steps,
        }

    @classmethod
    def from_state(cls, state: dict | None) -> EpochSums:
        return cls(**state) if state else cls()


def _as_float64(value):
    if isinstance(value, torch.Tensor):
        return value.detach().to(torch.float64)
    return float(value)


class StepTimer:
    """Where an epoch's wall time goes: waiting for the next batch (`batch_ready`) or training
    on it (`step_done`, which counts its samples)."""

    def __init__(self) -> None:
        self.data_time = self.compute_time = 0.0
        self.samples = 0
        self._tic = self._got = time.perf_counter()

    def batch_ready(self) -> None:
        self._got = time.perf_counter()
        self.data_time += self._got - self._tic

    def step_done(self, samples: int) -> None:
        self.samples += samples
        self._tic = time.perf_counter()
        self.compute_time += self._tic - self._got

    def timing(self) -> dict[str, float]:
        total = self.data_time + self.compute_time
        return {
            "samples_per_s": self.samples / total if total > 0 else 0.0,
            "data_share": self.data_time / total if total > 0 else 0.0,
        }


def epoch_record(
    epoch: int, step: int, lr: float, sums: EpochSums, timing: dict[str, float], info
) -> dict[str, Any]:
    """The record of the epoch that ended after step `step`: its loss means (over ranks), the lr
    of its last step and this rank's throughput."""
    means = D.reduce_mean(sums.means(), info)
    return {"epoch": epoch, "step": step, "lr": lr, **means, **timing}
