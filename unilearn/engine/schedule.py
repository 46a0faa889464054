"""Learning-rate schedule: linear warmup from `warmup_start_lr`, then half-cosine to `min_lr`,
evaluated per step, and the lr scaling rule (lr = blr x global batch / lr_batch_base).

Two cosines (`cosine_span`): `after_warmup` = VideoMAE/MAE's `cosine_scheduler` (the authors'
fine-tuning): the half-cosine spans the steps after the warmup, so it starts at the peak lr;
`run` = the authors' pre-training (fvcore's CompositeParamScheduler with lengths [0.05, 0.95] and
interval scaling ['rescaled', 'fixed']): the cosine is a function of the progress of the whole
run, `min + (peak - min) (1 + cos(pi step / total)) / 2`, so it joins the warmup at 99.4% of the
peak and runs 1/0.95^2 ~ 1.11x lower than `after_warmup` late in the run (warmup 5%).

A pure function of the step (no state), so a resumed run recomputes exactly the same lr. Torch-free:
`unilearn config` prints `effective_schedule` without importing torch, from the same functions the
engine calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class WarmupCosine:
    base_lr: float
    min_lr: float
    warmup_steps: int
    total_steps: int
    warmup_start_lr: float  # the lr of step 0
    cosine_span: str  # "after_warmup" or "run" (see the module docstring)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            f = step / self.warmup_steps
            return self.base_lr * f + self.warmup_start_lr * (1.0 - f)
        if self.cosine_span == "run":
            progress = min(step / max(self.total_steps, 1), 1.0)
        else:
            span = max(self.total_steps - self.warmup_steps, 1)
            progress = min((step - self.warmup_steps) / span, 1.0)
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (
            1.0 + math.cos(math.pi * progress)
        )


def scaled_lr(
    blr: float, global_batch: int, lr: float | None = None, batch_base: int = 256
) -> float:
    """lr = blr * global_batch / batch_base (MAE's rule with 256; the authors' fine-tuning uses 8),
    unless an absolute `lr` is given."""
    return lr if lr is not None else blr * global_batch / batch_base


def global_batch(opt_cfg, world_size: int) -> int:
    """Samples per optimiser step over all ranks: per-GPU `batch_size` x ranks (pre-training: views;
    joint fine-tuning: videos, the batch the lr is scaled by, as the authors')."""
    return opt_cfg.batch_size * world_size


def build_schedule(opt_cfg, global_batch: int, steps_per_epoch: int) -> WarmupCosine:
    """The schedule of a `PretrainConfig`/`FinetuneConfig` section."""
    base = scaled_lr(opt_cfg.blr, global_batch, opt_cfg.lr, opt_cfg.lr_batch_base)
    return WarmupCosine(
        base_lr=base,
        min_lr=min(opt_cfg.min_lr, base),
        warmup_steps=round(opt_cfg.warmup_epochs * steps_per_epoch),
        total_steps=opt_cfg.epochs * steps_per_epoch,
        warmup_start_lr=opt_cfg.warmup_start_lr,
        cosine_span=opt_cfg.cosine_span,
    )


def effective_schedule(opt_cfg, world_size: int, steps_per_epoch: int | None) -> dict:
    """What the engine will use: global batch, peak lr, min lr, warmup and total steps (the step
    counts only when `steps_per_epoch` is known, i.e. the store's tables were read)."""
    batch = global_batch(opt_cfg, world_size)
    schedule = build_schedule(opt_cfg, batch, steps_per_epoch or 0)
    known = steps_per_epoch is not None
    return {
        "world_size": world_size,
        "global_batch": batch,
        "lr": schedule.base_lr,
        "min_lr": schedule.min_lr,
        "warmup_start_lr": schedule.warmup_start_lr,
        "cosine_span": schedule.cosine_span,
        "steps_per_epoch": steps_per_epoch,
        "warmup_steps": schedule.warmup_steps if known else None,
        "total_steps": schedule.total_steps if known else None,
    }
