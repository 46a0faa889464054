"""Learning-rate schedule: linear warmup then half-cosine to `min_lr`, evaluated per step.

A pure function of the step (no state), so a resumed run recomputes exactly the same lr.
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


def scaled_lr(blr: float, global_batch: int, lr: float | None = None) -> float:
    """MAE's rule: lr = blr * global_batch / 256, unless an absolute `lr` is given."""
    return lr if lr is not None else blr * global_batch / 256


def build_schedule(opt_cfg, global_batch: int, steps_per_epoch: int) -> WarmupCosine:
    """The schedule of a `PretrainConfig`/`FinetuneConfig` section."""
    base = scaled_lr(opt_cfg.blr, global_batch, opt_cfg.lr)
    return WarmupCosine(
        base_lr=base,
        min_lr=min(opt_cfg.min_lr, base),
        warmup_steps=round(opt_cfg.warmup_epochs * steps_per_epoch),
        total_steps=opt_cfg.epochs * steps_per_epoch,
    )
