"""The launcher for the CPU stages (doctor, manifest, preprocess): the same `--launcher` and
`--slurm-*` flags as the GPU stages, plus `--config` files read for their `launcher` section only
(these stages take no other config). Under `--launcher submitit` the stage runs as a Slurm CPU job
with `launcher.slurm` updated by `launcher.stages.<stage>` (e.g. a CPU partition, no GPU)."""

from __future__ import annotations

import argparse

from unilearn.launch.resources import add_launcher_arguments

CPU_STAGES = ("doctor", "manifest", "preprocess")


def add_cpu_launcher_arguments(parser: argparse.ArgumentParser) -> None:
    """`--config` (for the launcher section) and the launcher flags, on a CPU stage's parser."""
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="YAML",
        help="config file(s) whose `launcher` section says where this stage runs (repeatable)",
    )
    add_launcher_arguments(parser)


def submit_cpu_stage(args: argparse.Namespace) -> int | None:
    """Run the stage as a Slurm job if `--launcher submitit` (or the config's launcher.name) asks
    for it; None means "run it here". Without `--config` and `--launcher`, it runs here."""
    launcher = getattr(args, "launcher", None)
    configs = getattr(args, "config", None) or []
    if launcher in (None, "local") and not configs or launcher == "local":
        return None
    from unilearn.config import Config, load_config
    from unilearn.launch.submit import submit_if_requested

    cfg = load_config(configs) if configs else Config()
    return submit_if_requested(args, cfg.launcher.for_stage(args.stage))
