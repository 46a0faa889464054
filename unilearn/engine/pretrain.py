"""Dual-modal MAE pre-training (paper Eq. 1-2, Table 2 modes): one encoder learns to reconstruct
masked face images (AffectNet, mask 0.90) and masked face videos (VoxCeleb2, mask 0.95), each
batch from one modality. `--mode none` trains nothing and writes a randomly initialised encoder,
so every fine-tune starts from a checkpoint. Writes RUN/checkpoint.pt (encoder + meta) and a
resumable RUN/last.pt; re-running the same command resumes.

Read top to bottom: `main` (command line -> config, or a Slurm job), `run` (model, data,
optimiser, resume, then the epochs), `train_one_epoch`, `train_step`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unilearn import launch
from unilearn.catalogue import IMAGENET_MEAN, IMAGENET_STD
from unilearn.config import config_hash, load_config, save_resolved
from unilearn.data.transforms import crop_views_on_device, normalize
from unilearn.engine import distributed as D
from unilearn.engine.checkpointing import Checkpoints, CheckpointSchedule, resume_position
from unilearn.engine.cli_args import add_pretrain_arguments as add_arguments  # noqa: F401
from unilearn.engine.epoch_record import EpochSums, StepTimer, epoch_record
from unilearn.engine.loader import check_epoch_ended, pretrain_data, rest_of_epoch
from unilearn.engine.optim import build_optimizer, set_lr
from unilearn.engine.schedule import build_schedule, global_batch
from unilearn.engine.step import StepContext, autocast, backward_step, step_context
from unilearn.engine.train_state import RunFiles, seed_everything, seed_training
from unilearn.engine.wandb_log import run_for
from unilearn.models import create_model, save_checkpoint
from unilearn.progress import Progress
from unilearn.report.seeds import pretrain_name, seeded

STAGE = "pretrain"


def main(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    rc = launch.submit_if_requested(args, cfg.launcher.for_stage(STAGE))
    if rc is not None:
        return rc
    run(cfg, args.mode, args.store, args.out, wandb_mode=args.wandb, progress=not args.no_progress,
        restart_if_config_changed=args.restart_if_config_changed)  # fmt: skip
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
    digest = config_hash(cfg, STAGE)
    if restart_if_config_changed:
        launch.restart_if_config_changed(out, digest)
    info = D.init_distributed(cfg.runtime.device)
    D.set_threads(cfg.runtime.threads)
    files = RunFiles(out, info)
    if info.is_main:
        save_resolved(cfg, out, STAGE)

    # model: the same initial weights on every rank
    seed_everything(cfg.seed)
    name, kwargs = cfg.mae_spec()
    model = create_model(name, **kwargs).to(info.device)
    meta = _meta(cfg, mode, digest)
    if mode == "none":
        # Table 2's "no pre-training" row: the fine-tune stage still gets a checkpoint to load.
        if info.is_main:
            save_checkpoint(out / "checkpoint.pt", model, {**meta, "train": {}})
        D.cleanup(info)
        return {}

    # data, optimiser, lr schedule
    data = pretrain_data(cfg, mode, store, info)
    steps_per_epoch = data.steps_per_epoch()
    total_steps = pt.epochs * steps_per_epoch
    end_step = min(total_steps, pt.max_steps or total_steps)
    schedule = build_schedule(pt, global_batch(pt, info.world_size), steps_per_epoch)
    optimizer = build_optimizer(model, schedule.base_lr, pt.weight_decay, pt.betas,
                                no_decay_rule=pt.no_weight_decay)  # fmt: skip
    ctx = step_context(optimizer, schedule, info, cfg.runtime, pt.clip_grad, files)

    # resume: from where RUN/last.pt left off, if there is one
    identity = {"mode": mode}
    state = files.resume(model, optimizer, ctx.scaler, digest, identity)
    step, history, sums = resume_position(state)
    ddp = D.wrap(model, info, compile=cfg.runtime.compile)
    # under `seeds_pretrain` each seed's pre-training is its own W&B run: `<mode>@seed=N`
    name = pretrain_name(mode, cfg.seed if cfg.seeds_pretrain and seeded(cfg) else None)
    wandb = run_for(cfg, job_type=STAGE, group=f"{cfg.name}/pretrain", name=name, run_dir=out,
                    is_main=info.is_main, mode=wandb_mode, identity={"pretrain_mode": mode})  # fmt: skip
    when = CheckpointSchedule(pt.checkpoint_every, pt.checkpoint_minutes, cfg.runtime.log_every,
                              end_step, info)  # fmt: skip
    checkpoints = Checkpoints(files, when, steps_per_epoch, model=model, optimizer=optimizer,
                              scaler=ctx.scaler, config_hash=digest, meta=meta, identity=identity,
                              history=history)  # fmt: skip
    report = Progress(desc=f"pretrain {mode}", stage=STAGE, run_dir=out, start_step=step,
                      end_step=end_step, steps_per_epoch=steps_per_epoch,
                      every=cfg.runtime.log_every, schedule=schedule, wandb=wandb, model=model,
                      is_main=info.is_main, bar=progress)  # fmt: skip

    # the epochs
    seed_training(cfg.seed, info.rank, state)
    try:
        with checkpoints, data.batches(step, end_step, seed=cfg.seed) as batches:
            while step < end_step:
                epoch = step // steps_per_epoch
                step, sums, timing = train_one_epoch(
                    ddp, rest_of_epoch(batches, step, end_step, steps_per_epoch), step, ctx,
                    sums, checkpoints, report,
                )  # fmt: skip
                check_epoch_ended(step, end_step, steps_per_epoch)
                record = epoch_record(epoch, step, schedule(step - 1), sums, timing, info)
                history.append(record)
                sums = EpochSums()
                checkpoints.at_epoch_end(step, sums)
                report.epoch_end(record)

            final = checkpoints.save_final(out / "checkpoint.pt")
            report.finished("done", final)
            checkpoints.deliver()  # a signal after the last step: the run is complete
    except BaseException:
        report.finished("failed")
        raise
    finally:
        D.cleanup(info)
    return final


def train_one_epoch(
    model: nn.Module,
    batches,
    step: int,
    ctx: StepContext,
    sums: EpochSums,
    checkpoints: Checkpoints,
    report: Progress,
) -> tuple[int, EpochSums, dict[str, float]]:
    """Train on the rest of one epoch's `batches`; `step` counts optimiser steps since the start
    of training. Losses are summed per modality (`image` / `video`). After each step: `last.pt`
    when due (or at once on a signal), the progress report, and every `runtime.log_every` steps
    the NaN guard. Returns (step, sums, timing)."""
    model.train()
    timer = StepTimer()
    for batch in batches:
        timer.batch_ready()
        loss = train_step(model, batch, step, ctx)
        step += 1
        views = len(batch["y"])  # rows = views (a repeated clip is several)
        sums.add(batch["modality"], loss, 0.0, views)
        checkpoints.after_step(step, sums)
        report.step(step, sums, {"modality": batch["modality"]})
        if step % ctx.log_every == 0:
            ctx.finite.check(ctx.dist)  # on every rank together
        timer.step_done(views)
    return step, sums, timer.timing()


def train_step(model: nn.Module, batch: dict, step: int, ctx: StepContext) -> torch.Tensor:
    """One optimiser step on one single-modality batch (images: T = one tubelet, mask ratio 0.90;
    videos: T = num_frames, 0.95); returns the reconstruction loss on the masked patches, a tensor
    on the device (no sync)."""
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
