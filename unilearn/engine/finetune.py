"""Joint fine-tuning (paper Eq. 13): the encoder starts from a pre-training checkpoint (ours or
VideoMAE's / MAE-DFER's), MoAE layers are added, SFER and DFER batches come from the joint sampler
and each trains its own head; one experiment of the config (a row of the paper's tables) on one
dataset and fold. Writes RUN/checkpoint.pt (weights + everything `unilearn predict` needs) and a
resumable RUN/last.pt; re-running the same command resumes. The job also runs the test
(`unilearn.engine.best_epoch`): its own test split every `finetune.eval_every` epochs,
RUN/checkpoint-best.pt by the authors' rule, RUN/checkpoint-val.pt by WAR on a validation split
(`finetune.selection`), and RUN/pred-<test>[.best|.val].parquet for the last and picked weights.

Read top to bottom: `main` (command line -> config, or a Slurm job), `run` (model, data, losses;
the optimiser, resume, W&B, `last.pt` and progress of `unilearn.engine.training.TrainingRun`;
then the epochs with their tests), `train_one_epoch`, `train_step`.

A batch comes from one source; its loss is that source's head's, L = (1 - a) L_SFER + a L_DFER
with a = 1 for a DFER batch and 0 for an SFER batch, plus the MoAE load-balancing loss.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unilearn.catalogue import IMAGENET_MEAN, IMAGENET_STD
from unilearn.config import load_config
from unilearn.data.transforms import normalize
from unilearn.data.validation_split import Holdout
from unilearn.engine.best_epoch import RunTests
from unilearn.engine.loader import finetune_data
from unilearn.engine.scoring import check_fold, check_heads, default_tests, test_sets
from unilearn.engine.step import StepContext, autocast, backward_step, set_lr, unwrap
from unilearn.engine.training import EpochSums, StepTimer, TrainingRun, WandbNames
from unilearn.engine.wandb_log import group_and_name, run_identity
from unilearn.launch.submit import submit_if_requested
from unilearn.layout import store_settings, target_name
from unilearn.models import create_model, load_pretrained
from unilearn.models.checkpoint import CheckpointError
from unilearn.report.provenance import file_sha256

STAGE = "finetune"


def main(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    if (rc := submit_if_requested(args, cfg.launcher.for_stage(STAGE))) is not None:
        return rc  # the stage ran as a Slurm job
    tests = args.test or default_tests(cfg, args.experiment, args.dataset)
    run(
        cfg,
        args.experiment,
        args.dataset,
        args.fold,
        args.store,
        args.out,
        init=args.init,
        wandb_mode=args.wandb,
        progress=not args.no_progress,
        run_name=args.run,
        tests=tests,
        restart_if_config_changed=args.restart_if_config_changed,
    )
    return 0


def run(
    cfg,
    experiment: str,
    dataset: str,
    fold: int | None,
    store: Path,
    out: Path,
    *,
    init: Path | None = None,
    wandb_mode: str | None = None,
    progress: bool = True,
    run_name: str | None = None,
    tests: Sequence[str] = (),
    restart_if_config_changed: bool = False,
) -> dict[str, Any]:
    """Fine-tune one experiment on one dataset/fold; returns the final epoch's record. `tests`:
    the test sets (the first picks the best epoch; `unilearn.engine.best_epoch`); empty: train
    only, no test and no predictions."""
    check_fold(dataset, fold)
    testsets = test_sets(dataset, fold, tests)
    resolved = cfg.resolve_experiment(experiment, dataset)
    check_heads(testsets, resolved)
    cfg = resolved.config  # the experiment's config from here on
    ft = cfg.finetune
    training = TrainingRun(
        cfg,
        STAGE,
        out,
        resolved,
        wandb_mode=wandb_mode,
        progress=progress,
        restart_if_config_changed=restart_if_config_changed,
    )
    info = training.info

    # model: the same initial weights on every rank (DDP also broadcasts them)
    model = create_model(resolved.model_name, **resolved.model_kwargs)
    if init is not None:
        _load_init(model, init, resolved.pretrain_mode, info.is_main)
    model.to(info.device)

    # data and losses; the training rows depend on the config only
    holdout = Holdout.of_run(ft.selection.holdout, resolved.dataset, cfg.seed)
    data = finetune_data(cfg, resolved, fold, store, info, holdout=holdout)
    mixups = finetune_mixups(ft, resolved)
    criteria = {t: criterion_for(mixups[t] is not None, ft.label_smoothing) for t in resolved.tasks}

    # optimiser, lr schedule, resume, DDP, W&B (a run's seeds share a group), last.pt, progress
    run_name = run_name or experiment
    target = target_name(dataset, fold)
    group, wandb_name = group_and_name(cfg.name, run_name, target)
    training.start(
        model,
        data,
        ft,
        param_groups={"layer_decay": ft.layer_decay},
        identity={"experiment": experiment, "dataset": dataset, "fold": fold, "init": _str(init)},
        meta=_meta(cfg, resolved, training.digest, fold, init, store) | {"run": run_name},
        wandb=WandbNames(
            group, wandb_name, run_identity(run_name, experiment, dataset, fold, init)
        ),
        desc=f"finetune {run_name} {target}",
        # each batch uses one head and the top-k experts only: the rest get no gradient
        find_unused_parameters=True,
    )

    # the epochs, each followed by its test (every eval_every epochs, and after the last)
    epoch = partial(train_one_epoch, criteria=criteria, mixups=mixups)
    if not testsets:
        return training.train(epoch)
    run_tests = RunTests(training, testsets, store, holdout)
    return training.train(epoch, after_epoch=run_tests.after_epoch, at_end=run_tests.at_end)


def train_one_epoch(
    run: TrainingRun,
    batches: Iterable[dict],
    step: int,
    sums: EpochSums,
    criteria: dict[str, nn.Module],
    mixups: dict[str, Callable | None],
) -> tuple[int, EpochSums, dict[str, float]]:
    """Train on the rest of one epoch's `batches`; `step` counts optimiser steps since the start
    of training. Losses are summed per task. After each step: `last.pt` when due (or at once on a
    signal), the progress report, and every `runtime.log_every` steps the NaN guard
    (`TrainingRun.after_step`). Returns (step, sums, timing)."""
    model = run.ddp
    model.train()
    timer = StepTimer()
    for batch in batches:
        timer.batch_ready()
        loss, aux = train_step(model, batch, step, run.ctx, criteria, mixups)
        step += 1
        sums.add(batch["task"], loss, aux, len(batch["y"]))
        run.after_step(step, sums, {"task": batch["task"]})
        timer.step_done(len(batch["y"]))
    return step, sums, timer.timing()


def train_step(
    model: nn.Module,
    batch: dict,
    step: int,
    ctx: StepContext,
    criteria: dict[str, nn.Module],
    mixups: dict[str, Callable | None],
) -> tuple[torch.Tensor, torch.Tensor]:
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


def criterion_for(mixup_active: bool, label_smoothing: float) -> nn.Module:
    """timm's losses as VideoMAE: soft targets under mixup (it smooths the labels itself),
    label smoothing otherwise."""
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if mixup_active:
        return SoftTargetCrossEntropy()
    if label_smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=label_smoothing)
    return nn.CrossEntropyLoss()


def finetune_mixups(ft, resolved) -> dict[str, Callable | None]:
    """Each task's mixup/cutmix on the device (None: off), over its head's classes."""
    from unilearn.data.mixup import ClipMixup

    if not (ft.mixup > 0 or ft.cutmix > 0):
        return dict.fromkeys(resolved.tasks)
    rates = (ft.mixup, ft.cutmix, ft.mixup_prob, ft.mixup_switch_prob, ft.label_smoothing)
    return {task: ClipMixup(len(resolved.labels[task]), *rates) for task in resolved.tasks}


def _load_init(model, init: Path, pretrain_mode: str, verbose: bool) -> None:
    """Initialise the encoder from a pre-training checkpoint; refuse one of another mode."""
    report = load_pretrained(model, init)
    if report.missing_backbone:
        raise CheckpointError(str(report))
    made_by = (report.meta or {}).get("pretrain_mode")
    if made_by is not None and made_by != pretrain_mode:
        raise CheckpointError(
            f"{init}: pre-trained with mode {made_by!r}, but this experiment needs {pretrain_mode!r}"
        )
    if verbose:
        print(report)


def _str(path: Path | None) -> str | None:
    return str(path) if path else None


def _meta(
    cfg, resolved, digest: str, fold: int | None, init: Path | None, store: Path | None
) -> dict[str, Any]:
    """What inference needs (model, heads, input, how the store cut its face clips) and where
    the weights came from."""
    m = cfg.model
    preprocess = None
    settings = store_settings(store or ".", resolved.dfer_dataset or resolved.sfer_dataset)
    if store is not None and settings.is_file():
        preprocess = json.loads(settings.read_text())
    meta = {} if preprocess is None else {"preprocess": preprocess}
    return meta | {
        "model_name": resolved.model_name,
        "model_kwargs": resolved.plain_model_kwargs(),
        "labels": {head: list(names) for head, names in resolved.labels.items()},
        "num_frames": m.num_frames,
        "input_size": m.input_size,
        "frame_stride": cfg.finetune.frame_stride,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "config_hash": digest,
        "experiment": resolved.name,
        "dataset": resolved.dataset,
        "fold": fold,
        "tasks": list(resolved.tasks),
        "pretrain_mode": resolved.pretrain_mode,
        "init": _str(init),
        # the starting weights' sha256 (published weights have no run of ours behind them)
        "init_sha256": file_sha256(init) if init else None,
    }
