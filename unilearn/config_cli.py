"""`unilearn config`: print the fully resolved configuration of one stage as JSON, after every
config file, override and experiment, with an `effective` object holding what the engine will use
(global batch, lr, min lr, warmup and total steps, frame stride, ...), computed by the same
functions the engine calls. Check what will run before spending GPU hours.

Import-light (no torch): config, the torch-free schedule, and, with `--store`, the engine's loader
spec, store rows and sampler (`unilearn.engine.loader`, `unilearn.data.loader_spec`) that give
the steps per epoch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from unilearn.catalogue import FINETUNE_DATASETS, PRETRAIN_MODES
from unilearn.config import load_config

STAGES = ("pretrain", "finetune")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # dest differs from `stage`: the top-level CLI records its own subcommand there
    parser.add_argument("--stage", dest="of_stage", required=True, choices=STAGES,
                        help="the stage to resolve")  # fmt: skip
    parser.add_argument("--config", action="append", required=True, type=Path, metavar="YAML",
                        help="config file; repeat to merge (later wins)")  # fmt: skip
    parser.add_argument(
        "--mode", choices=tuple(PRETRAIN_MODES), help="pre-training mode (pretrain)"
    )
    parser.add_argument("--experiment", help="experiment name (finetune)")
    parser.add_argument("--dataset", choices=FINETUNE_DATASETS,
                        help="dataset to fine-tune for (finetune)")  # fmt: skip
    parser.add_argument("--fold", type=int, default=None, help="fold 1-5 (DFEW, MAFW)")
    parser.add_argument("--world-size", type=int, default=None, metavar="N",
                        help="ranks (GPUs) of the run (default: nodes x tasks_per_node the "
                        "launcher config starts for the stage; 1 with the local launcher)")  # fmt: skip
    parser.add_argument("--store", type=Path, default=None,
                        help="clip store: also resolve steps per epoch, warmup and total steps")  # fmt: skip
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="config overrides, after all options")  # fmt: skip


def main(args: argparse.Namespace) -> int:
    try:
        resolved = resolve_stage(
            args.config, args.of_stage, overrides=args.overrides, mode=args.mode,
            experiment=args.experiment, dataset=args.dataset, fold=args.fold,
            world_size=args.world_size, store=args.store,
        )  # fmt: skip
    except ValueError as e:  # ConfigError is one
        print(f"unilearn config: {e}", file=sys.stderr)
        return 2
    print(json.dumps(resolved, indent=2, sort_keys=False))
    return 0


def default_world_size(cfg, stage: str) -> int:
    """Ranks the launcher config would start for `stage`: nodes x tasks per node on Slurm, one
    process with the local launcher."""
    if cfg.launcher.name != "submitit":
        return 1
    slurm = cfg.launcher.slurm_for(stage)
    return slurm.nodes * slurm.tasks_per_node


def resolve_stage(
    configs,
    stage: str,
    *,
    overrides=(),
    mode: str | None = None,
    experiment: str | None = None,
    dataset: str | None = None,
    fold: int | None = None,
    world_size: int | None = None,
    store: Path | None = None,
) -> dict[str, Any]:
    """The resolved config of one stage run as a JSON-ready dict with its `effective` values."""
    from unilearn.engine.schedule import effective_schedule

    cfg = load_config(configs, overrides)
    world = world_size or default_world_size(cfg, stage)
    if world < 1:
        raise ValueError(f"--world-size must be >= 1, got {world}")
    if stage == "pretrain":
        if mode is None:
            raise ValueError("--stage pretrain needs --mode")
        run_cfg, section = cfg, cfg.pretrain
        steps = _pretrain_steps(cfg, mode, store, world) if store else None
        run = {"mode": mode, "init": cfg.pretrain.init.get(mode)}
        effective = effective_schedule(section, world, steps) | {
            "frame_stride": section.frame_stride,
            "views_per_clip": section.repeated_views,
            "clips_per_video_batch": section.batch_size // section.repeated_views,
            "no_weight_decay": section.no_weight_decay,
            "precision": cfg.runtime.precision,
        }
    else:
        if experiment is None or dataset is None:
            raise ValueError("--stage finetune needs --experiment and --dataset")
        resolved = cfg.resolve_experiment(experiment, dataset)
        run_cfg, section = resolved.config, resolved.config.finetune
        steps = _finetune_steps(run_cfg, resolved, fold, store, world) if store else None
        run = {
            "experiment": experiment, "dataset": dataset, "fold": fold,
            "arch": resolved.arch, "pretrain_mode": resolved.pretrain_mode,
            "tasks": list(resolved.tasks), "model_name": resolved.model_name,
            "model_kwargs": resolved.plain_model_kwargs(),
            "init": cfg.pretrain.init.get(resolved.pretrain_mode),
        }  # fmt: skip
        effective = effective_schedule(section, world, steps) | {
            "frame_stride": section.frame_stride,
            "sfer_batch": section.batch_size * section.sfer_batch_factor,
            "test_frame_stride": section.frame_stride,  # evaluation reads the checkpoint's
            "test_clips": run_cfg.evaluate.n_clips,
        }
    out = run_cfg.model_dump(mode="json", exclude={"experiments", "sweeps"})
    return {"stage": stage, "run": run, **out, "effective": effective}


def _pretrain_steps(cfg, mode: str, store: Path, world: int) -> int:
    """Batches per epoch on one rank: the engine's spec, rows and sampler."""
    from unilearn.data.loader_spec import pretrain_rows, pretrain_sampler
    from unilearn.engine.loader import pretrain_spec

    spec = pretrain_spec(cfg, mode, store, rank=0, world_size=world, pin_memory=False)
    return len(pretrain_sampler(spec, pretrain_rows(spec)))


def _finetune_steps(cfg, resolved, fold, store: Path, world: int) -> int:
    """Batches per epoch on one rank: the engine's spec, rows (less the validation split the
    engine holds out) and sampler."""
    from unilearn.data.loader_spec import finetune_rows, finetune_sampler
    from unilearn.data.validation_split import Holdout
    from unilearn.engine.loader import finetune_spec

    holdout = Holdout.of_run(cfg.finetune.selection.holdout, resolved.dataset, cfg.seed)
    spec = finetune_spec(cfg, resolved, fold, store, holdout, rank=0, world_size=world,
                         pin_memory=False)  # fmt: skip
    return len(finetune_sampler(spec, finetune_rows(spec)))
