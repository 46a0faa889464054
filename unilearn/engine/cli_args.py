"""Command-line options of the training-side stages (pretrain, finetune, evaluate): each stage's
own, then what every one of them takes (W&B mode, progress bar, trailing config overrides and
the launcher flags). Torch-free, so `unilearn STAGE --help` answers at once; the stage modules
name these functions as their `add_arguments`."""

from __future__ import annotations

import argparse
from pathlib import Path

from unilearn.catalogue import FINETUNE_DATASETS, PRETRAIN_MODES
from unilearn.engine.wandb_log import add_wandb_argument
from unilearn.launch.resources import add_launcher_arguments
from unilearn.launch.restart import add_restart_argument


def add_run_arguments(parser: argparse.ArgumentParser, overrides_example: str) -> None:
    add_wandb_argument(parser)
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no tqdm progress bar (the progress lines every runtime.log_every steps stay)",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key.sub=value",
        help=f"config overrides, after all options: {overrides_example}",
    )
    add_launcher_arguments(parser)


def add_finetune_arguments(parser: argparse.ArgumentParser) -> None:
    """`unilearn finetune`."""
    add_common_arguments(parser)
    parser.add_argument(
        "--experiment",
        required=True,
        help="experiment name from the config (unilearn, videomae, vit_mtl, ...)",
    )
    add_target_arguments(
        parser,
        "DFER dataset to fine-tune for (affectnet7 only for SFER-only runs)",
        "cross-validation fold 1-5 (DFEW, MAFW); omit for FERV39K/AffectNet-7",
    )
    parser.add_argument("--init", type=Path, default=None, metavar="PRETRAIN_CKPT",
                        help="pre-trained encoder: `unilearn pretrain` output, or a VideoMAE / "
                        "MAE-DFER checkpoint (default: random init)")  # fmt: skip
    parser.add_argument("--run", default=None, metavar="EXPERIMENT[@SWEEP=VALUE][@seed=N]",
                        help="the workflow's name of this run, a sweep point and seed included: "
                        "names its W&B group and run (default: the experiment); the seed itself "
                        "is the override seed=N")  # fmt: skip
    parser.add_argument("--test", action="append", default=None, metavar="DATASET",
                        choices=FINETUNE_DATASETS,
                        help="test set, repeatable; the first (the run's own) picks the reported epochs "
                        "(default: the run's own test split, plus affectnet7 for a joint model "
                        "on ferv39k); predictions RUN/pred-DATASET[.best|.val].parquet")  # fmt: skip


def add_target_arguments(parser: argparse.ArgumentParser, dataset: str, fold: str) -> None:
    """`--dataset` (required) and `--fold` of a fine-tuning or a test, with their help texts."""
    parser.add_argument("--dataset", required=True, choices=FINETUNE_DATASETS, help=dataset)
    parser.add_argument("--fold", type=int, default=None, help=fold)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by pretrain and finetune."""
    parser.add_argument(
        "--config",
        action="append",
        required=True,
        type=Path,
        metavar="YAML",
        help="config file; repeat to merge (later wins): "
        "--config configs/paper.yaml --config configs/local.yaml",
    )
    parser.add_argument(
        "--store",
        required=True,
        type=Path,
        help="clip store directory (`unilearn preprocess` output)",
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="RUN",
        help="run directory: config.yaml, last.pt, checkpoint.pt, log.jsonl",
    )
    add_restart_argument(parser)
    add_run_arguments(parser, "finetune.epochs=50 model.moae.n_experts=4")


def add_pretrain_arguments(parser: argparse.ArgumentParser) -> None:
    """`unilearn pretrain`."""
    add_common_arguments(parser)
    parser.add_argument("--mode", required=True, choices=tuple(PRETRAIN_MODES),
                        help="Table 2: none (random init), image (AffectNet), video (VoxCeleb2), "
                        "image+video (UniLearn), video+video (VoxCeleb2 frames as images)")  # fmt: skip


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """`unilearn evaluate`."""
    parser.add_argument(
        "--checkpoint",
        required=True,
        type=Path,
        help="fine-tuned checkpoint (`unilearn finetune` RUN/checkpoint.pt)",
    )
    parser.add_argument("--store", required=True, type=Path, help="clip store directory")
    add_target_arguments(
        parser, "test set; affectnet7 is scored with the SFER head", "test fold 1-5 (DFEW, MAFW)"
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="PRED.parquet",
        help="per-clip predictions; metrics, expert usage and class centres beside",
    )
    parser.add_argument(
        "--config",
        action="append",
        type=Path,
        default=None,
        metavar="YAML",
        help="config (repeatable); default: the config.yaml beside the checkpoint",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="for an imported checkpoint without unilearn meta (VideoMAE, or the UniLearn "
        "authors' checkpoint-best.pth): the registered model, e.g. unilearn_base_patch16_160",
    )
    parser.add_argument(
        "--labels",
        default=None,
        help="with --model: the DFER head's classes (a label set, e.g. ferv39k, or names)",
    )
    add_run_arguments(parser, "evaluate.batch_size=64")


def add_params_arguments(parser: argparse.ArgumentParser) -> None:
    """`unilearn params` (the model name is checked when the model is built: an unknown one
    lists the registered ones)."""
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="registered model, e.g. unilearn_base_patch16_160, vit_base_patch16_160, "
        "vit_moe_base_patch16_160 (an unknown name lists them all)",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="constructor overrides, e.g. n_experts=4 num_classes=11 moae_position=early",
    )
    parser.add_argument(
        "--task", choices=("dfer", "sfer"), default="dfer", help="whose head counts as active"
    )
