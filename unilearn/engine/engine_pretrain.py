"""One epoch of dual-modal MAE pre-training (paper Eq. 1-2): each batch is all images (T =
tubelet, mask ratio 0.90) or all videos (T = num_frames, mask ratio 0.95); the loss is the MSE on
masked patches that the model returns. Forward, loss, backward, step, metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from torch import nn

from unilearn.data.transforms import crop_views_on_device, normalize
from unilearn.engine.engine_finetune import EpochSums, read_every
from unilearn.engine.optim import StepContext, autocast, backward_step, set_lr


def train_step(model: nn.Module, batch: dict, step: int, ctx: StepContext) -> float:
    """One optimiser step on one single-modality batch; returns the reconstruction loss (a
    tensor on the device: no sync)."""
    set_lr(ctx.optimizer, ctx.schedule(step))
    x = batch["x"].to(ctx.device, non_blocking=True)
    if "boxes" in batch:  # decoded clips: cut their repeated views here, on the device
        x = crop_views_on_device(x, batch["boxes"].to(ctx.device), batch["flip"].to(ctx.device),
                                 batch["views"], model_input_size(model))  # fmt: skip
    x = normalize(x)
    with autocast(ctx):
        loss = model(x)["loss"]
    backward_step(loss, step, model, ctx)
    return loss.detach()


def model_input_size(model: nn.Module) -> int:
    """The square input size of the (possibly DDP-wrapped) MAE."""
    size = getattr(model, "module", model).img_size
    return int(size[0] if isinstance(size, tuple | list) else size)


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[dict],
    step: int,
    end_step: int,
    ctx: StepContext,
    sums: EpochSums,
    on_step: Callable[[int, EpochSums], None] | None = None,
    progress=None,
) -> tuple[int, EpochSums, dict[str, float]]:
    """Run the remaining steps of one epoch (see `engine_finetune.train_one_epoch`). Batches are
    summed per modality (`image` / `video`)."""
    model.train()
    data_time = compute_time = 0.0
    samples = 0
    tic = time.perf_counter()
    for batch in batches:
        if step >= end_step:
            break
        got = time.perf_counter()
        data_time += got - tic
        loss = train_step(model, batch, step, ctx)
        step += 1
        modality = batch.get("modality") or ("image" if batch["x"].shape[2] == 2 else "video")
        views = len(batch["y"])  # rows = views (a repeated clip is several)
        sums.add(modality, loss, 0.0, views)
        samples += views
        if on_step is not None:
            on_step(step, sums)
        read_every(step, ctx, sums, progress, {"modality": modality})
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
