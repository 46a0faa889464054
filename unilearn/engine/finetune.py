"""Joint fine-tuning (paper Eq. 13): the encoder starts from a pre-training checkpoint (ours or
VideoMAE's / MAE-DFER's), MoAE layers are added, SFER and DFER batches come from the joint sampler
and each trains its own head; one experiment of the config (a row of the paper's tables) on one
dataset and fold. Writes RUN/checkpoint.pt (weights + everything `unilearn predict` needs) and a
resumable RUN/last.pt; re-running the same command resumes. The job also runs the test
(`unilearn.engine.best_epoch`): its own test split every `finetune.eval_every` epochs,
RUN/checkpoint-best.pt by the authors' rule, RUN/checkpoint-val.pt by WAR on a validation split
(`finetune.selection`), and RUN/pred-<test>[.best|.val].parquet for the last and picked weights.

Read top to bottom: `main` (command line -> config, or a Slurm job), `run` (model, data,
optimiser, resume, then the epochs with their tests), `train_one_epoch`, `train_step`.

A batch comes from one source; its loss is that source's head's, L = (1 - a) L_SFER + a L_DFER
with a = 1 for a DFER batch and 0 for an SFER batch, plus the MoAE load-balancing loss.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unilearn import launch
from unilearn.catalogue import IMAGENET_MEAN, IMAGENET_STD
from unilearn.config import config_hash, load_config, save_resolved
from unilearn.data.transforms import normalize
from unilearn.data.validation_split import Holdout
from unilearn.engine import distributed as D
from unilearn.engine.best_epoch import RunTests
from unilearn.engine.checkpointing import Checkpoints, CheckpointSchedule, resume_position
from unilearn.engine.cli_args import add_finetune_arguments as add_arguments  # noqa: F401
from unilearn.engine.epoch_record import EpochSums, StepTimer, epoch_record
from unilearn.engine.loader import check_epoch_ended, finetune_data, rest_of_epoch
from unilearn.engine.optim import build_optimizer, set_lr
from unilearn.engine.pretrain_init import file_sha256
from unilearn.engine.schedule import build_schedule, global_batch
from unilearn.engine.step import StepContext, autocast, backward_step, step_context
from unilearn.engine.targets import check_fold, default_tests, head_for, test_sets
from unilearn.engine.train_state import RunFiles, seed_everything, seed_training, unwrap
from unilearn.engine.wandb_log import group_and_name, run_for, run_identity, target_name
from unilearn.models import create_model, load_pretrained
from unilearn.models.checkpoint import CheckpointError
from unilearn.progress import Progress

STAGE = "finetune"


def main(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    rc = launch.submit_if_requested(args, cfg.launcher.for_stage(STAGE))
    if rc is not None:
        return rc
    tests = args.test or default_tests(cfg, args.experiment, args.dataset)
    run(cfg, args.experiment, args.dataset, args.fold, args.store, args.out, init=args.init,
        wandb_mode=args.wandb, progress=not args.no_progress, run_name=args.run,
        tests=tests, restart_if_config_changed=args.restart_if_config_changed)  # fmt: skip
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
    for test in testsets:
        if head_for(test.dataset) not in resolved.labels:
            raise SystemExit(f"--test {test.dataset}: experiment {experiment} has no "
                             f"{head_for(test.dataset).upper()} head to test it with")  # fmt: skip
    rcfg, ft = resolved.config, resolved.config.finetune
    digest = config_hash(rcfg, STAGE, resolved)
    if restart_if_config_changed:
        launch.restart_if_config_changed(out, digest)
    info = D.init_distributed(rcfg.runtime.device)
    D.set_threads(rcfg.runtime.threads)
    files = RunFiles(out, info)
    if info.is_main:
        save_resolved(rcfg, out, STAGE, resolved)

    # model: the same initial weights on every rank (DDP also broadcasts them)
    seed_everything(rcfg.seed)
    model = create_model(resolved.model_name, **resolved.model_kwargs)
    if init is not None:
        _load_init(model, init, resolved.pretrain_mode, info.is_main)
    model.to(info.device)

    # data, losses, optimiser, lr schedule
    # the training rows depend on the config only
    holdout = Holdout.of_run(ft.selection.holdout, resolved.dataset, rcfg.seed)
    data = finetune_data(rcfg, resolved, fold, store, info, holdout=holdout)
    steps_per_epoch = data.steps_per_epoch()
    total_steps = ft.epochs * steps_per_epoch
    end_step = min(total_steps, ft.max_steps or total_steps)
    mixups = finetune_mixups(ft, resolved)
    criteria = {t: criterion_for(mixups[t] is not None, ft.label_smoothing) for t in resolved.tasks}
    schedule = build_schedule(ft, global_batch(ft, info.world_size), steps_per_epoch)
    optimizer = build_optimizer(model, schedule.base_lr, ft.weight_decay, ft.betas, ft.layer_decay)
    ctx = step_context(optimizer, schedule, info, rcfg.runtime, ft.clip_grad, files)

    # resume: from where RUN/last.pt left off, if there is one
    identity = {"experiment": experiment, "dataset": dataset, "fold": fold,
                "init": str(init) if init else None}  # fmt: skip
    state = files.resume(model, optimizer, ctx.scaler, digest, identity)
    step, history, sums = resume_position(state)
    # each batch uses one head and the top-k experts only: the rest get no gradient
    ddp = D.wrap(model, info, find_unused_parameters=True, compile=rcfg.runtime.compile)
    run_name = run_name or experiment
    name = target_name(dataset, fold)
    group, wandb_name = group_and_name(rcfg.name, run_name, name)  # a run's seeds share a group
    wandb = run_for(rcfg, job_type=STAGE, group=group, name=wandb_name, run_dir=out,
                    is_main=info.is_main, mode=wandb_mode,
                    identity=run_identity(run_name, experiment, dataset, fold, init))  # fmt: skip
    meta = _meta(resolved, digest, fold, init, store) | {"run": run_name}
    run_tests = None
    if testsets:
        run_tests = RunTests(
            model=model, tests=testsets, cfg=rcfg, store=store, meta=meta, info=info,
            dtype=ctx.autocast_dtype, out=out, eval_every=ft.eval_every, end_step=end_step,
            history=history, progress=progress, holdout=holdout,
        )  # fmt: skip
    when = CheckpointSchedule(ft.checkpoint_every, ft.checkpoint_minutes, rcfg.runtime.log_every,
                              end_step, info)  # fmt: skip
    checkpoints = Checkpoints(files, when, steps_per_epoch, model=model, optimizer=optimizer,
                              scaler=ctx.scaler, config_hash=digest, meta=meta, identity=identity,
                              history=history)  # fmt: skip
    report = Progress(desc=f"finetune {run_name} {name}", stage=STAGE, run_dir=out,
                      start_step=step, end_step=end_step, steps_per_epoch=steps_per_epoch,
                      every=rcfg.runtime.log_every, schedule=schedule, wandb=wandb, model=model,
                      is_main=info.is_main, bar=progress)  # fmt: skip

    # the epochs, each followed by its test (every eval_every epochs, and after the last)
    seed_training(rcfg.seed, info.rank, state)
    try:
        with checkpoints, data.batches(step, end_step, seed=rcfg.seed) as batches:
            while step < end_step:
                epoch = step // steps_per_epoch
                step, sums, timing = train_one_epoch(
                    ddp, rest_of_epoch(batches, step, end_step, steps_per_epoch), step, ctx,
                    criteria, mixups, sums, checkpoints, report,
                )  # fmt: skip
                check_epoch_ended(step, end_step, steps_per_epoch)
                record = epoch_record(epoch, step, schedule(step - 1), sums, timing, info)
                if run_tests is not None:  # before last.pt keeps the record
                    record |= run_tests.after_epoch(epoch, step, record)
                history.append(record)
                sums = EpochSums()
                checkpoints.at_epoch_end(step, sums)
                report.epoch_end(record)

            final = checkpoints.save_final(out / "checkpoint.pt")
            summary = run_tests.at_end(final) if run_tests is not None else {}  # predictions
            report.finished("done", final, summary)
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
    criteria: dict[str, nn.Module],
    mixups: dict[str, Callable | None],
    sums: EpochSums,
    checkpoints: Checkpoints,
    report: Progress,
) -> tuple[int, EpochSums, dict[str, float]]:
    """Train on the rest of one epoch's `batches`; `step` counts optimiser steps since the start
    of training. Losses are summed per task. After each step: `last.pt` when due (or at once on a
    signal), the progress report, and every `runtime.log_every` steps the NaN guard. Returns
    (step, sums, timing)."""
    model.train()
    timer = StepTimer()
    for batch in batches:
        timer.batch_ready()
        loss, aux = train_step(model, batch, step, ctx, criteria, mixups)
        step += 1
        sums.add(batch["task"], loss, aux, len(batch["y"]))
        checkpoints.after_step(step, sums)
        report.step(step, sums, {"task": batch["task"]})
        if step % ctx.log_every == 0:
            ctx.finite.check(ctx.dist)  # on every rank together
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
    return {task: ClipMixup(len(resolved.labels[task]), ft.mixup, ft.cutmix, ft.mixup_prob,
                            ft.mixup_switch_prob, ft.label_smoothing)
            for task in resolved.tasks}  # fmt: skip


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


def _meta(
    resolved, digest: str, fold: int | None, init: Path | None, store: Path | None
) -> dict[str, Any]:
    """What inference needs (model, heads, input, how the store cut its face clips) and where
    the weights came from."""
    m = resolved.config.model
    preprocess = None
    settings = (
        Path(store or ".") / (resolved.dfer_dataset or resolved.sfer_dataset) / "settings.json"
    )
    if store is not None and settings.is_file():
        preprocess = json.loads(settings.read_text())
    meta = {} if preprocess is None else {"preprocess": preprocess}
    return meta | {
        "model_name": resolved.model_name,
        "model_kwargs": resolved.plain_model_kwargs(),
        "labels": {head: list(names) for head, names in resolved.labels.items()},
        "num_frames": m.num_frames,
        "input_size": m.input_size,
        "frame_stride": resolved.config.finetune.frame_stride,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "config_hash": digest,
        "experiment": resolved.name,
        "dataset": resolved.dataset,
        "fold": fold,
        "tasks": list(resolved.tasks),
        "pretrain_mode": resolved.pretrain_mode,
        "init": str(init) if init else None,
        # the starting weights' sha256 (published weights have no run of ours behind them)
        "init_sha256": file_sha256(init) if init else None,
    }
