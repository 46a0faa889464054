"""One optimiser step, as both stages take it: what it needs besides the model and the batch
(`StepContext`: optimiser, lr schedule, device, ranks, autocast dtype, grad scaler, clipping, the
NaN guard), the step's lr (`set_lr`), the autocast it runs under, backward + clip + step
(`backward_step`), and the NaN/inf loss guard (`FiniteWatch`).

The step makes no host-device sync: AdamW is fused on CUDA (`unilearn.engine.optim`), and the NaN
guard only records on the device; the run reads it every `runtime.log_every` steps and before
every save (`unilearn.engine.training`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from unilearn.engine.distributed import DistInfo


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


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's lr to `lr * lr_scale` (the layer-decay factor)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


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


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel (or the model itself)."""
    return getattr(model, "module", model)


# -- the NaN guard -----------------------------------------------------------------------------


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; the run stopped and kept its last good checkpoint."""


def check_finite(loss: float, step: int, last_good: str | None) -> None:
    """Stop the run with a clear message when the loss is NaN or inf (the last checkpoint on
    disk was saved before that step, so it is a good one)."""
    if math.isfinite(loss):
        return
    kept = (
        f"the last good checkpoint {last_good} is kept"
        if last_good
        else "no checkpoint was written yet"
    )
    raise NonFiniteLossError(
        f"loss is {loss} at step {step}: stopping the run ({kept}). Lower the learning rate "
        "(finetune.blr / pretrain.blr), set finetune.clip_grad, or check the inputs of this step."
    )


class FiniteWatch:
    """The NaN/inf guard without a host sync per step: `observe` records, on the device, the
    first step whose loss was not finite; `check` reads it (one sync, plus one all-reduce across
    ranks so that all stop together) and raises `NonFiniteLossError`. The engines check every
    `runtime.log_every` steps and before every save, so a bad loss stops the run within that
    many steps and never reaches a checkpoint."""

    _NONE = 2**62

    def __init__(self, last_good: Callable[[], str | None] = lambda: None) -> None:
        self.last_good = last_good
        self._step: torch.Tensor | None = None
        self._value: torch.Tensor | None = None

    def observe(self, loss: torch.Tensor, step: int) -> None:
        loss = loss.detach().float()
        if self._step is None:
            self._step = torch.full((), self._NONE, dtype=torch.int64, device=loss.device)
            self._value = torch.zeros((), device=loss.device)
        first = ~torch.isfinite(loss) & (self._step == self._NONE)
        self._step = torch.where(first, step, self._step)
        self._value = torch.where(first, loss, self._value)

    def check(self, info=None, collective: bool = True) -> None:
        """Raise if a loss observed so far was not finite, on this rank or (collective) any."""
        from unilearn.engine.distributed import all_reduce_min

        local = self._step if self._step is not None else torch.tensor(self._NONE)
        if collective and info is not None and info.distributed:
            first = int(all_reduce_min(local.reshape(1), info).item())
        else:
            first = int(local.item())
        if first == self._NONE:
            return
        own = self._step is not None and int(self._step.item()) == first
        value = float(self._value.item()) if own else float("nan")  # another rank's: not sent
        check_finite(value, first, self.last_good())
