"""Command-line options that every training-side stage (pretrain, finetune, evaluate) takes after
its own: W&B mode, progress bar, trailing config overrides and the launcher flags."""

from __future__ import annotations

import argparse

from unilearn import launch
from unilearn.engine.wandb_log import add_wandb_argument


def add_run_arguments(parser: argparse.ArgumentParser, overrides_example: str) -> None:
    add_wandb_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key.sub=value",
        help=f"config overrides, after all options: {overrides_example}",
    )
    launch.add_launcher_arguments(parser)
