"""One optimiser step, as both stages take it: what it needs besides the model and the batch
(`StepContext`: optimiser, lr schedule, device, ranks, autocast dtype, grad scaler, clipping, the
NaN guard), the autocast it runs under, and backward + clip + step (`backward_step`).

The step makes no host-device sync: AdamW is fused on CUDA (`unilearn.engine.optim`), and the NaN
guard only records on the device (`FiniteWatch`); the stages read it every `runtime.log_every`
steps and before every save.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from unilearn.engine.distributed import DistInfo
from unilearn.engine.train_state import FiniteWatch


@dataclass
class StepContext:
    """What every training step needs besides the model and the batch."""

    optimizer: torch.optim.Optimizer
    schedule: Callable[[int], float]
    device: torch.device
    dist: DistInfo
    autocast_dtype: torch.dtype | None = None  # None = fp32
    scaler: torch.amp.GradScaler | None = None  # only for fp16
    clip_grad: float | None = None
    last_good: Callable[[], str | None] = lambda: None  # path of the last checkpoint written
    finite: FiniteWatch | None = None  # the NaN guard (RunFiles.finite); None = a fresh one
    log_every: int = 50  # steps between host reads of the loss sums and NaN checks

    def __post_init__(self) -> None:
        if self.finite is None:
            self.finite = FiniteWatch(self.last_good)


def autocast(ctx: StepContext):
    """bf16 (or fp16) autocast when the context asks for it; a no-op context in fp32."""
    if ctx.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(ctx.device.type, dtype=ctx.autocast_dtype)


def backward_step(loss: torch.Tensor, step: int, model: nn.Module, ctx: StepContext) -> None:
    """NaN/inf guard (recorded on the device), backward, optional clipping, optimiser step.

    The guard is read every `ctx.log_every` steps and before every save, on every rank together
    (a rank alone stopping would hang the others in all-reduce): a bad loss stops the run within
    `log_every` steps and never reaches a checkpoint, so the last one on disk is a good one.
    """
    ctx.finite.observe(loss, step)
    ctx.optimizer.zero_grad(set_to_none=True)
    if ctx.scaler is not None:
        ctx.scaler.scale(loss).backward()
        if ctx.clip_grad:
            ctx.scaler.unscale_(ctx.optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), ctx.clip_grad)
        ctx.scaler.step(ctx.optimizer)
        ctx.scaler.update()
    else:
        loss.backward()
        if ctx.clip_grad:
            nn.utils.clip_grad_norm_(model.parameters(), ctx.clip_grad)
        ctx.optimizer.step()


def step_context(optimizer, schedule, info: DistInfo, runtime, clip_grad: float | None,
                 files) -> StepContext:  # fmt: skip
    """The steps of a run: autocast in `runtime.precision` on this rank's device (`auto`: bf16 on
    CUDA, fp32 on CPU), a grad scaler for fp16 only, the NaN guard of the run directory
    (`RunFiles.finite`), read every `runtime.log_every` steps."""
    from unilearn.engine.distributed import autocast_dtype

    dtype = autocast_dtype(runtime.precision, info.device)
    scaler = torch.amp.GradScaler(info.device.type) if dtype == torch.float16 else None
    return StepContext(optimizer, schedule, info.device, info, dtype, scaler, clip_grad,
                       last_good=files.last_good, finite=files.finite,
                       log_every=runtime.log_every)  # fmt: skip
