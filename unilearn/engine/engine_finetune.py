"""One epoch of joint fine-tuning (paper Eq. 13): each batch comes from one source, its loss is
the loss of that source's head, L = (1 - a) L_SFER + a L_DFER with a = 1 for a DFER batch and 0
for an SFER batch, plus the MoAE load-balancing loss. Forward, loss, backward, step, metrics.

No host-device sync per step: the losses are summed on the device (`EpochSums`) and read every
`runtime.log_every` steps, together with the NaN check (`FiniteWatch`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from unilearn.data.transforms import normalize
from unilearn.engine.optim import StepContext, autocast, backward_step, set_lr
from unilearn.engine.train_state import unwrap


@dataclass
class EpochSums:
    """Running sums of one epoch (saved in `last.pt`, so a resumed epoch reports the same means).

    `add` takes the step's loss tensors as they are (on the device) and sums them there in
    float64: no host sync per step, and the same numbers as summing their `.item()` values in
    Python floats (float32 -> float64 is exact, and the additions are the same float64 ones).
    `means()` / `state_dict()` read them (one sync)."""

    loss: dict[str, float | torch.Tensor] = field(default_factory=dict)  # per task
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
        return {"loss": loss, "batches": dict(self.batches), "samples": dict(self.samples),
                "aux": aux, "steps": self.steps}  # fmt: skip

    @classmethod
    def from_state(cls, state: dict | None) -> EpochSums:
        return cls(**state) if state else cls()


def _as_float64(value):
    if isinstance(value, torch.Tensor):
        return value.detach().to(torch.float64)
    return float(value)


def read_every(step: int, ctx: StepContext, sums: EpochSums, progress, label: dict) -> None:
    """Every `ctx.log_every` steps: the NaN check (all ranks) and the progress bar's loss (the
    only host reads of the step loop)."""
    if step % ctx.log_every:
        return
    ctx.finite.check(ctx.dist)
    if progress is not None and not progress.disable:
        means = sums.means()
        losses = {
            k.removeprefix("loss_"): f"{v:.3f}" for k, v in means.items() if k.startswith("loss_")
        }
        progress.set_postfix(**label, **losses, refresh=False)


def criterion_for(mixup_active: bool, label_smoothing: float) -> nn.Module:
    """timm's losses as VideoMAE: soft targets under mixup (it smooths the labels itself),
    label smoothing otherwise."""
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if mixup_active:
        return SoftTargetCrossEntropy()
    if label_smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=label_smoothing)
    return nn.CrossEntropyLoss()


def train_step(
    model: nn.Module,
    batch: dict,
    step: int,
    ctx: StepContext,
    criteria: dict[str, nn.Module],
    mixups: dict[str, Callable | None],
) -> tuple[float, float]:
    """One optimiser step on one single-source batch; returns (task loss, aux loss) as tensors
    on the device (no sync)."""
    task = batch["task"]
    set_lr(ctx.optimizer, ctx.schedule(step))
    # only uint8 crosses to the device; normalisation and mixup run there
    x = normalize(batch["x"].to(ctx.device, non_blocking=True))
    y = batch["y"].to(ctx.device, non_blocking=True)
    mix = mixups.get(task)
    target = y
    if mix is not None:
        x, target = mix(x, y)
    with autocast(ctx):
        logits = model(x, task=task)
        loss_task = criteria[task](logits.float(), target)
        aux = unwrap(model).aux_loss()
        loss = loss_task + aux
    backward_step(loss, step, model, ctx)
    return loss_task.detach(), aux.detach()


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[dict],
    step: int,
    end_step: int,
    ctx: StepContext,
    criteria: dict[str, nn.Module],
    mixups: dict[str, Callable | None],
    sums: EpochSums,
    on_step: Callable[[int, EpochSums], None] | None = None,
    progress=None,
) -> tuple[int, EpochSums, dict[str, float]]:
    """Run the remaining steps of one epoch. `step` counts optimiser steps since the start of
    training; the loop stops early at `end_step` (max_steps). `on_step(step, sums)` runs after
    each step (periodic checkpoints). Returns (step, sums, timing)."""
    model.train()
    data_time = compute_time = 0.0
    samples = 0
    tic = time.perf_counter()
    for batch in batches:
        if step >= end_step:
            break
        got = time.perf_counter()
        data_time += got - tic
        loss, aux = train_step(model, batch, step, ctx, criteria, mixups)
        step += 1
        sums.add(batch["task"], loss, aux, len(batch["y"]))
        samples += len(batch["y"])
        if on_step is not None:
            on_step(step, sums)
        read_every(step, ctx, sums, progress, {"task": batch["task"]})
        tic = time.perf_counter()
        compute_time += tic - got
        if progress is not None:
            progress.update(1)
    total = data_time + compute_time
    timing = {
        "samples_per_s": samples / total if total > 0 else 0.0,
        "data_share": data_time / total if total > 0 else 0.0,
    }
    return step, sums, timing
