"""Learning-rate schedule: linear warmup then half-cosine to `min_lr`, evaluated per step, and the
lr scaling rule (lr = blr x global batch / lr_batch_base).

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

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.base_lr * step / self.warmup_steps
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
        "steps_per_epoch": steps_per_epoch,
        "warmup_steps": schedule.warmup_steps if known else None,
        "total_steps": schedule.total_steps if known else None,
    }
