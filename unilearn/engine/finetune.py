"""Joint fine-tuning (paper Eq. 13): the encoder starts from a pre-training checkpoint (ours or
VideoMAE's / MAE-DFER's), MoAE layers are added, SFER and DFER batches come from the joint sampler
and each trains its own head; one experiment of the config (a row of the paper's tables) on one
dataset and fold. Writes RUN/checkpoint.pt (weights + everything `unilearn predict` needs) and a
resumable RUN/last.pt; re-running the same command resumes. The job also runs the test
(`unilearn.engine.best_epoch`): its own test split every `finetune.eval_every` epochs,
RUN/checkpoint-best.pt by WAR, and RUN/pred-<test>[.best].parquet for the last and best weights.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from unilearn import launch
from unilearn.catalogue import IMAGENET_MEAN, IMAGENET_STD
from unilearn.config import config_hash, load_config, save_resolved
from unilearn.engine import distributed as D
from unilearn.engine.best_epoch import RunTests, TestSet
from unilearn.engine.cli_args import add_finetune_arguments as add_arguments  # noqa: F401
from unilearn.engine.engine_finetune import criterion_for, train_one_epoch
from unilearn.engine.evaluate import head_for
from unilearn.engine.loader import TrainData
from unilearn.engine.loop import run_epochs
from unilearn.engine.optim import StepContext, build_optimizer
from unilearn.engine.pretrain_init import file_sha256
from unilearn.engine.schedule import build_schedule, global_batch
from unilearn.engine.train_state import RunFiles, seed_everything
from unilearn.engine.wandb_log import run_for, run_identity, target_name
from unilearn.models import create_model, load_pretrained
from unilearn.models.checkpoint import CheckpointError
from unilearn.report.layout import tests_of

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


def default_tests(cfg, experiment: str, dataset: str) -> list[str]:
    """The test sets the workflow asks of a run (`unilearn.report.layout.tests_of`)."""
    if experiment not in cfg.experiments:
        return [dataset]  # resolve_experiment names the problem
    return tests_of(dataset, cfg.experiments[experiment].tasks)


def test_sets(dataset: str, fold: int | None, tests: Sequence[str]) -> list[TestSet]:
    """`--test` names as test sets: the run's own dataset at its fold, another one unfolded."""
    out = []
    for test in tests:
        if test == dataset:
            out.append(TestSet(test, fold))
        elif test in ("dfew", "mafw"):
            raise SystemExit(f"--test {test}: a {dataset} run is tested on {test} only when it "
                             f"is fine-tuned on {test} (its folds are {test}'s)")  # fmt: skip
        else:
            out.append(TestSet(test, None))
    return out


def check_fold(dataset: str, fold: int | None) -> None:
    if dataset in ("dfew", "mafw"):
        if fold not in (1, 2, 3, 4, 5):
            raise SystemExit(
                f"--dataset {dataset} is evaluated by 5-fold cross-validation: give --fold 1..5"
            )
    elif fold is not None:
        raise SystemExit(f"--dataset {dataset} has one official split: do not give --fold")


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
    digest = config_hash(rcfg, STAGE)
    if restart_if_config_changed:
        launch.restart_if_config_changed(out, digest)
    info = D.init_distributed(rcfg.runtime.device)
    D.set_threads(rcfg.runtime.threads)
    files = RunFiles(out, info)
    if info.is_main:
        save_resolved(rcfg, out, STAGE)

    # Model: same init on every rank (DDP also broadcasts it), then per-rank training randomness.
    seed_everything(rcfg.seed)
    model = create_model(resolved.model_name, **resolved.model_kwargs)
    if init is not None:
        _load_init(model, init, resolved.pretrain_mode, info.is_main)
    model.to(info.device)

    data = finetune_data(rcfg, resolved, fold, store, info)
    steps_per_epoch = data.steps_per_epoch()
    total_steps = ft.epochs * steps_per_epoch
    end_step = min(total_steps, ft.max_steps or total_steps)
    schedule = build_schedule(ft, global_batch(ft, info.world_size), steps_per_epoch)
    optimizer = build_optimizer(model, schedule.base_lr, ft.weight_decay, ft.betas, ft.layer_decay)
    dtype = D.autocast_dtype(rcfg.runtime.precision, info.device)
    scaler = torch.amp.GradScaler(info.device.type) if dtype == torch.float16 else None
    ctx = StepContext(optimizer, schedule, info.device, info, dtype, scaler, ft.clip_grad,
                      last_good=files.last_good, finite=files.finite,
                      log_every=rcfg.runtime.log_every)  # fmt: skip
    mixups = {task: data.mixups.get(task) for task in resolved.tasks}
    criteria = {t: criterion_for(mixups[t] is not None, ft.label_smoothing) for t in resolved.tasks}

    identity = {"experiment": experiment, "dataset": dataset, "fold": fold,
                "init": str(init) if init else None}  # fmt: skip
    state = files.resume(model, optimizer, scaler, digest, identity)
    # each batch uses one head and the top-k experts only: the rest get no gradient
    ddp = D.wrap(model, info, find_unused_parameters=True, compile=rcfg.runtime.compile)
    run_name = run_name or experiment
    name = target_name(dataset, fold)
    wandb = run_for(rcfg, job_type=STAGE, group=f"{rcfg.name}/{run_name}", name=name, run_dir=out,
                    is_main=info.is_main, mode=wandb_mode,
                    identity=run_identity(run_name, experiment, dataset, fold, init))  # fmt: skip

    def train_epoch(loader, step, end, sums, on_step, bar):
        return train_one_epoch(ddp, loader, step, end, ctx, criteria, mixups, sums, on_step, bar)

    meta = _meta(resolved, digest, fold, init, store) | {"run": run_name}
    hooks = {}
    if testsets:
        run_tests = RunTests(
            model=model, tests=testsets, cfg=rcfg, store=store, meta=meta, info=info, dtype=dtype,
            out=out, eval_every=ft.eval_every, end_step=end_step,
            history=state["extra"]["history"] if state else [], progress=progress,
        )  # fmt: skip
        hooks = {"after_epoch": run_tests.after_epoch, "at_end": run_tests.at_end}
    return run_epochs(
        model=model, optimizer=optimizer, schedule=schedule, scaler=scaler, files=files,
        state=state, digest=digest, meta=meta,
        identity=identity, data=data, end_step=end_step, checkpoint_every=ft.checkpoint_every,
        checkpoint_minutes=ft.checkpoint_minutes, seed=rcfg.seed, info=info, wandb=wandb, train_epoch=train_epoch,
        desc=f"finetune {run_name} {name}", progress=progress, log_every=rcfg.runtime.log_every,
        **hooks,
    )  # fmt: skip


def finetune_data(cfg, resolved, fold: int | None, store: Path, info) -> TrainData:
    """The joint training set of a run: DFER train split of `resolved.dfer_dataset` (fold) and
    `sfer_proportion` of the SFER train split, batches from one source at a time."""
    from unilearn.data.datasets import build_finetune_loader
    from unilearn.data.mixup import ClipMixup

    ft, m = cfg.finetune, cfg.model
    loader = build_finetune_loader(
        store, resolved.dfer_dataset, resolved.sfer_dataset, fold=fold,
        num_frames=m.num_frames, input_size=m.input_size, batch_size=ft.batch_size,
        num_workers=cfg.data.num_workers, seed=cfg.seed, rank=info.rank,
        world_size=info.world_size, sfer_proportion=ft.sfer_proportion, randaug=ft.randaug,
        frame_stride=ft.frame_stride, crop_scale=tuple(ft.crop_scale),
        random_erasing=ft.random_erasing, sfer_sampling=ft.sfer_sampling,
        sfer_batch_factor=ft.sfer_batch_factor, sfer_augment=ft.sfer_augment,
        sfer_resize=ft.sfer_resize, sfer_randaug=ft.sfer_randaug,
    )  # fmt: skip
    mixups = {}
    if ft.mixup > 0 or ft.cutmix > 0:
        for task, names in resolved.labels.items():
            mixups[task] = ClipMixup(len(names), ft.mixup, ft.cutmix, ft.mixup_prob,
                                     ft.mixup_switch_prob, ft.label_smoothing)  # fmt: skip
    pin = cfg.data.pin_memory and info.device.type == "cuda"
    return TrainData.from_loader(loader, pin, mixups)


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
        "model_kwargs": dict(resolved.model_kwargs),
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
