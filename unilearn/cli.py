"""The `unilearn` command line: one subcommand per pipeline stage.

Stages are imported lazily so that `unilearn --help` answers at once (no torch import). Each stage
module exposes `add_arguments(parser)` and `main(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Order is the pipeline's order. Only stages that exist are listed.
STAGES: dict[str, tuple[str, str]] = {
    "synth": ("unilearn.data.synth", "write learnable synthetic datasets in the native layouts"),
    "doctor": (
        "unilearn.doctor.cli",
        "check a dataset copy against the paper's protocol before training",
    ),
    "manifest": ("unilearn.data.manifest", "native dataset tree -> Parquet manifest + quarantine"),
    "preprocess": (
        "unilearn.data.preprocess",
        "crop faces, resize and write the clip store (resumable, parallel)",
    ),
    "config": ("unilearn.config_cli", "print one stage's resolved config and effective lr/batch"),
    "pretrain": (
        "unilearn.engine.pretrain",
        "dual-modal MAE pre-training (Table 2 modes); resumable",
    ),
    "finetune": (
        "unilearn.engine.finetune",
        "joint SFER/DFER fine-tuning of one experiment, dataset and fold",
    ),
    "evaluate": (
        "unilearn.engine.evaluate",
        "2-clip test of a checkpoint: per-clip predictions, metrics, expert usage",
    ),
    "aggregate": (
        "unilearn.engine.aggregate",
        "pool the test folds' predictions; UAR/WAR once on the pool",
    ),
    "tables": (
        "unilearn.report.tables",
        "one of the paper's Tables 1-5: ours beside the paper's numbers (CSV + Markdown)",
    ),
    "figure": ("unilearn.report.figures", "one of the paper's Figures 3a/3b/4a/4b as PNG"),
    "predict": (
        "unilearn.predict.cli",
        "run a fine-tuned or imported checkpoint on raw videos, frame folders and images",
    ),
    "params": (
        "unilearn.models.params",
        "print total and per-token active parameter counts of a model",
    ),
}


def _top_parser() -> argparse.ArgumentParser:
    width = max(len(name) for name in STAGES)
    stages = "\n".join(f"  {name:<{width}}  {help_}" for name, (_, help_) in STAGES.items())
    parser = argparse.ArgumentParser(
        prog="unilearn",
        description="UniLearn for dynamic facial expression recognition: data, training, evaluation.",
        epilog=f"stages:\n{stages}\n\n`unilearn STAGE --help` describes a stage.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument(
        "stage", choices=list(STAGES), metavar="STAGE", help="pipeline stage to run"
    )
    return parser


def _version() -> str:
    from unilearn import __version__

    return f"unilearn {__version__}"


def stage_parser(name: str) -> tuple[argparse.ArgumentParser, object]:
    """The argument parser of one stage and its module."""
    module_name, help_ = STAGES[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(
        prog=f"unilearn {name}",
        description=(module.__doc__ or help_).strip(),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    module.add_arguments(parser)
    return parser, module


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0].startswith("-"):
        top.parse_args(argv or ["--help"])
        return 0
    top.parse_args(argv[:1])  # validates the stage name with a helpful message
    parser, module = stage_parser(argv[0])
    args = parser.parse_args(argv[1:])
    # The launcher re-submits the exact same stage command to Slurm (unilearn.launch).
    args.stage = argv[0]
    args.stage_argv = argv[1:]
    return int(module.main(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
