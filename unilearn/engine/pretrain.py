"""Dual-modal MAE pre-training (paper Eq. 1-2, Table 2 modes): one encoder learns to reconstruct
masked face images (AffectNet, mask 0.90) and masked face videos (VoxCeleb2, mask 0.95), each
batch from one modality. `--mode none` trains nothing and writes a randomly initialised encoder,
so every fine-tune starts from a checkpoint. Writes RUN/checkpoint.pt (encoder + meta) and a
resumable RUN/last.pt; re-running the same command resumes.

Read top to bottom: `main` (command line -> config, or a Slurm job), `run` (model, data; the
optimiser, resume, W&B, `last.pt` and progress of `unilearn.engine.training.TrainingRun`; then
the epochs), `train_one_epoch`, `train_step`.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unilearn.catalogue import IMAGENET_MEAN, IMAGENET_STD
from unilearn.config import load_config
from unilearn.data.transforms import crop_views_on_device, normalize
from unilearn.engine.loader import pretrain_data
from unilearn.engine.step import StepContext, autocast, backward_step, set_lr, unwrap
from unilearn.engine.training import EpochSums, StepTimer, TrainingRun, WandbNames
from unilearn.launch.submit import submit_if_requested
from unilearn.models import create_model
from unilearn.report.seeds import pretrain_name, seeded

STAGE = "pretrain"


def main(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    if (rc := submit_if_requested(args, cfg.launcher.for_stage(STAGE))) is not None:
        return rc  # the stage ran as a Slurm job
    run(
        cfg,
        args.mode,
        args.store,
        args.out,
        wandb_mode=args.wandb,
        progress=not args.no_progress,
        restart_if_config_changed=args.restart_if_config_changed,
    )
    return 0


def run(
    cfg,
    mode: str,
    store: Path,
    out: Path,
    *,
    wandb_mode: str | None = None,
    progress: bool = True,
    restart_if_config_changed: bool = False,
) -> dict[str, Any]:
    """Pre-train in `mode`; returns the final training metrics."""
    pt = cfg.pretrain
    training = TrainingRun(
        cfg,
        STAGE,
        out,
        wandb_mode=wandb_mode,
        progress=progress,
        restart_if_config_changed=restart_if_config_changed,
    )
    info = training.info

    # model: the same initial weights on every rank
    name, kwargs = cfg.mae_spec()
    model = create_model(name, **kwargs).to(info.device)
    meta = _meta(cfg, mode, training.digest)
    if mode == "none":
        # Table 2's "no pre-training" row: the fine-tune stage still gets a checkpoint to load.
        return training.save_untrained(model, meta)

    # data, optimiser, lr schedule, resume, DDP, W&B, last.pt, progress
    data = pretrain_data(cfg, mode, store, info)
    # under `seeds_pretrain` each seed's pre-training is its own W&B run: `<mode>@seed=N`
    name = pretrain_name(mode, cfg.seed if cfg.seeds_pretrain and seeded(cfg) else None)
    training.start(
        model,
        data,
        pt,
        param_groups={"no_decay_rule": pt.no_weight_decay},
        identity={"mode": mode},
        meta=meta,
        wandb=WandbNames(f"{cfg.name}/pretrain", name, {"pretrain_mode": mode}),
        desc=f"pretrain {mode}",
        find_unused_parameters=False,
    )
    return training.train(train_one_epoch)


def train_one_epoch(
    run: TrainingRun, batches: Iterable[dict], step: int, sums: EpochSums
) -> tuple[int, EpochSums, dict[str, float]]:
    """Train on the rest of one epoch's `batches`; `step` counts optimiser steps since the start
    of training. Losses are summed per modality (`image` / `video`). After each step: `last.pt`
    when due (or at once on a signal), the progress report, and every `runtime.log_every` steps
    the NaN guard (`TrainingRun.after_step`). Returns (step, sums, timing)."""
    model = run.ddp
    model.train()
    timer = StepTimer()
    for batch in batches:
        timer.batch_ready()
        loss = train_step(model, batch, step, run.ctx)
        step += 1
        views = len(batch["y"])  # rows = views (a repeated clip is several)
        sums.add(batch["modality"], loss, 0.0, views)
        run.after_step(step, sums, {"modality": batch["modality"]})
        timer.step_done(views)
    return step, sums, timer.timing()


def train_step(model: nn.Module, batch: dict, step: int, ctx: StepContext) -> torch.Tensor:
    """One optimiser step on one single-modality batch (images: T = one tubelet, mask ratio 0.90;
    videos: T = num_frames, 0.95); returns the reconstruction loss on the masked patches, a tensor
    on the device (no sync)."""
    set_lr(ctx.optimizer, ctx.schedule(step))
    x = batch["x"].to(ctx.device, non_blocking=True)
    if "boxes" in batch:  # decoded clips: cut their repeated views here, on the device
        boxes, flip = batch["boxes"].to(ctx.device), batch["flip"].to(ctx.device)
        x = crop_views_on_device(x, boxes, flip, batch["views"], model_input_size(model))
    x = normalize(x)
    with autocast(ctx):
        loss = model(x)["loss"]
    backward_step(loss, step, model, ctx)
    return loss.detach()


def model_input_size(model: nn.Module) -> int:
    """The square input size of the (possibly DDP-wrapped) MAE."""
    size = unwrap(model).img_size
    return int(size[0] if isinstance(size, tuple | list) else size)


def _meta(cfg, mode: str, digest: str) -> dict[str, Any]:
    m = cfg.model
    return {
        "pretrain_mode": mode,
        "num_frames": m.num_frames,
        "input_size": m.input_size,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "config_hash": digest,
        "labels": {},
    }
