"""Dual-modal MAE pre-training (paper Eq. 1-2, Table 2 modes): one encoder learns to reconstruct
masked face images (AffectNet, mask 0.90) and masked face videos (VoxCeleb2, mask 0.95), each
batch from one modality. `--mode none` trains nothing and writes a randomly initialised encoder,
so every fine-tune starts from a checkpoint. Writes RUN/checkpoint.pt (encoder + meta) and a
resumable RUN/last.pt; re-running the same command resumes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from unilearn import launch
from unilearn.catalogue import IMAGENET_MEAN, IMAGENET_STD, pretrain_sources
from unilearn.config import config_hash, load_config, save_resolved
from unilearn.engine import distributed as D
from unilearn.engine.cli_args import add_pretrain_arguments as add_arguments  # noqa: F401
from unilearn.engine.engine_pretrain import train_one_epoch
from unilearn.engine.loader import TrainData
from unilearn.engine.loop import run_epochs
from unilearn.engine.optim import StepContext, build_optimizer
from unilearn.engine.schedule import build_schedule, global_batch
from unilearn.engine.train_state import RunFiles, seed_everything
from unilearn.engine.wandb_log import run_for
from unilearn.models import create_model, save_checkpoint

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

    data = pretrain_data(cfg, mode, store, info)
    steps_per_epoch = data.steps_per_epoch()
    total_steps = pt.epochs * steps_per_epoch
    end_step = min(total_steps, pt.max_steps or total_steps)
    schedule = build_schedule(pt, global_batch(pt, info.world_size), steps_per_epoch)
    optimizer = build_optimizer(model, schedule.base_lr, pt.weight_decay, pt.betas)
    dtype = D.autocast_dtype(cfg.runtime.precision, info.device)
    scaler = torch.amp.GradScaler(info.device.type) if dtype == torch.float16 else None
    ctx = StepContext(optimizer, schedule, info.device, info, dtype, scaler, pt.clip_grad,
                      last_good=files.last_good, finite=files.finite,
                      log_every=cfg.runtime.log_every)  # fmt: skip

    identity = {"mode": mode}
    state = files.resume(model, optimizer, scaler, digest, identity)
    ddp = D.wrap(model, info, compile=cfg.runtime.compile)
    wandb = run_for(cfg, job_type=STAGE, group=f"{cfg.name}/pretrain", name=mode, run_dir=out,
                    is_main=info.is_main, mode=wandb_mode, identity={"pretrain_mode": mode})  # fmt: skip

    def train_epoch(loader, step, end, sums, on_step, bar):
        return train_one_epoch(ddp, loader, step, end, ctx, sums, on_step, bar)

    return run_epochs(
        model=model, optimizer=optimizer, schedule=schedule, scaler=scaler, files=files,
        state=state, digest=digest, meta=meta, identity=identity, data=data, end_step=end_step,
        checkpoint_every=pt.checkpoint_every, checkpoint_minutes=pt.checkpoint_minutes,
        seed=cfg.seed, info=info, wandb=wandb,
        train_epoch=train_epoch, desc=f"pretrain {mode}", progress=progress,
        log_every=cfg.runtime.log_every,
    )  # fmt: skip


def pretrain_data(cfg, mode: str, store: Path, info) -> TrainData:
    """The pre-training set of a mode: image batches (AffectNet, or VoxCeleb2 frames for
    video+video) and/or video batches (VoxCeleb2), one modality per batch."""
    from unilearn.data.datasets import build_pretrain_loader

    pt, m = cfg.pretrain, cfg.model
    image, video = pretrain_sources(mode, pt.image_dataset, pt.video_dataset)
    loader = build_pretrain_loader(
        store, image, video, num_frames=m.num_frames, input_size=m.input_size,
        batch_size=pt.batch_size, num_workers=cfg.data.num_workers, seed=cfg.seed,
        rank=info.rank, world_size=info.world_size, frame_stride=pt.frame_stride,
        image_proportion=pt.image_proportion, augment=pt.augment,
        image_crop_scale=tuple(pt.image_crop_scale), video_short_side=pt.video_short_side,
        video_crop_scale=tuple(pt.video_crop_scale), repeated_views=pt.repeated_views,
        video_repeat=pt.video_repeat, crop_on_device=pt.crop_on_device,
    )  # fmt: skip
    return TrainData.from_loader(loader, cfg.data.pin_memory and info.device.type == "cuda")


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
