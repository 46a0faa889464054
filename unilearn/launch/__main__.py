"""`python -m unilearn.launch STAGE [--config YAML]... [key.sub=value]... [--slurm-*] -- STAGE_ARGS`

Submits `unilearn STAGE STAGE_ARGS --launcher local` as a Slurm job exactly as `unilearn STAGE
STAGE_ARGS --launcher submitit` does (same resources, log streaming, cancel on signals, requeue),
but without importing the stage: a stage imports torch, timm and OpenCV (~800 MB resident), while
this waiting process holds ~40 MB, so a login node can wait on many folds at once. The workflow
uses it for its GPU stages under `launcher: submitit`, and for the CPU stages doctor, manifest and
preprocess (Slurm CPU jobs: give them a CPU partition and `gpus_per_task: 0` in
`launcher.stages`).

The config files and overrides before `--` are read for the `launcher` section only; the stage
reads its own from STAGE_ARGS. Logs go to `slurm/` beside the stage's `--out` unless
`--slurm-folder` is given.
"""

from __future__ import annotations

import argparse
import sys

from unilearn.launch.job import StageCommand
from unilearn.launch.resources import (
    CPU_STAGES,
    add_launcher_arguments,
    gpus_per_node,
    slurm_spec,
)
from unilearn.launch.submit import job_argv, run_as_job, submission_folder

GPU_STAGES = ("pretrain", "finetune", "evaluate")


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" not in argv:
        raise SystemExit(
            f"usage: python -m unilearn.launch STAGE [options] -- STAGE_ARGS\n{__doc__}"
        )
    split = argv.index("--")
    parser = argparse.ArgumentParser(
        prog="python -m unilearn.launch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("stage", choices=GPU_STAGES + CPU_STAGES)
    parser.add_argument("--config", action="append", default=[], metavar="YAML",
                        help="config file(s) whose launcher section gives the resources")  # fmt: skip
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="config overrides (e.g. launcher.slurm.partition=gpu)")  # fmt: skip
    add_launcher_arguments(parser)
    args = parser.parse_intermixed_args(argv[:split])
    stage_argv = argv[split + 1 :]
    # Where the stage writes (for the default log folder): only --out is read here.
    out = argparse.ArgumentParser(add_help=False)
    out.add_argument("--out")
    args.out = out.parse_known_args(stage_argv)[0].out
    args.stage_argv = stage_argv
    return args, stage_argv


def main(argv: list[str] | None = None) -> int:
    from unilearn.config import load_config

    args, stage_argv = parse(list(sys.argv[1:] if argv is None else argv))
    cfg = load_config(args.config, args.overrides)
    slurm = cfg.launcher.for_stage(args.stage).slurm
    if args.stage in GPU_STAGES and _estimate_time(cfg, args):
        from unilearn.launch.estimate import estimate_time_min

        gpus = gpus_per_node(slurm) * slurm.nodes  # of the config (not the --slurm-* flags)
        minutes = estimate_time_min(cfg, args.stage, _run_of(stage_argv), gpus)
        slurm = slurm.model_copy(update={"time_min": minutes})
    resources = slurm_spec(slurm, args)
    command = StageCommand([args.stage, *job_argv(stage_argv)])
    return run_as_job(
        command,
        submission_folder(args, args.stage),
        resources,
        cluster=args.submitit_cluster,
        stream=not args.slurm_quiet,
    )


def _estimate_time(cfg, args: argparse.Namespace) -> bool:
    """The time limit comes from the FLOP model unless the stage's own config or a flag sets it."""
    explicit = "time_min" in cfg.launcher.stages.get(args.stage, {}) or args.slurm_time_min
    return cfg.launcher.time_estimate.enabled and not explicit


def _run_of(stage_argv: list[str]) -> dict:
    """The stage's --mode, --experiment, --dataset and --fold (what its compute depends on)."""
    run = argparse.ArgumentParser(add_help=False)
    for flag in ("--mode", "--experiment", "--dataset"):
        run.add_argument(flag)
    run.add_argument("--fold", type=int)
    return vars(run.parse_known_args(stage_argv)[0])


if __name__ == "__main__":
    # a config error is one paragraph and exit 2, as in `unilearn STAGE` (unilearn.errors)
    from unilearn.errors import debug_requested, run_reporting

    raise SystemExit(run_reporting(main, "python -m unilearn.launch", debug_requested(sys.argv)))
