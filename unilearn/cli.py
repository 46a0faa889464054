"""The `unilearn` command line: one subcommand per pipeline stage.

Stages are imported lazily so that `unilearn --help` answers at once (no torch import). Each stage
module exposes `main(args) -> int`, and its options through `add_arguments(parser)` or, for a
stage whose module imports torch, a torch-free argument function named in its registry entry.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """One subcommand: `module` holds `main(args) -> int`; `help` is its line in `unilearn
    --help`; `arguments` (`module:function`) adds its options without importing `module` (the
    stages whose module imports torch, so that `unilearn STAGE --help` answers at once), else
    `module.add_arguments` does."""

    module: str
    help: str
    arguments: str | None = None


_ENGINE_ARGS = "unilearn.engine.cli_args"

# The stages, in the pipeline's order. Only stages that exist are listed.
STAGES: dict[str, Stage] = {
    "synth": Stage(
        "unilearn.data.synth_cli", "write learnable synthetic datasets in the native layouts"
    ),
    "doctor": Stage(
        "unilearn.doctor.cli", "check a dataset copy against the paper's protocol before training"
    ),
    "manifest": Stage(
        "unilearn.data.manifest_cli", "native dataset tree -> Parquet manifest + quarantine"
    ),
    "preprocess": Stage(
        "unilearn.data.preprocess_cli",
        "crop faces, resize and write the clip store (resumable, parallel)",
    ),
    "config": Stage(
        "unilearn.config_cli", "print one stage's resolved config and effective lr/batch"
    ),
    "pretrain": Stage(
        "unilearn.engine.pretrain",
        "dual-modal MAE pre-training (Table 2 modes); resumable",
        f"{_ENGINE_ARGS}:add_pretrain_arguments",
    ),
    "finetune": Stage(
        "unilearn.engine.finetune",
        "joint SFER/DFER fine-tuning of one experiment, dataset and fold",
        f"{_ENGINE_ARGS}:add_finetune_arguments",
    ),
    "evaluate": Stage(
        "unilearn.engine.evaluate",
        "2-clip test of a checkpoint: per-clip predictions, metrics, expert usage",
        f"{_ENGINE_ARGS}:add_evaluate_arguments",
    ),
    "aggregate": Stage(
        "unilearn.engine.aggregate", "pool the test folds' predictions; UAR/WAR once on the pool"
    ),
    "tables": Stage(
        "unilearn.report.tables_cli",
        "one of the paper's Tables 1-5: ours beside the paper's numbers (CSV + Markdown)",
    ),
    "figure": Stage(
        "unilearn.report.figures", "one of the paper's Figures 3a/3b/4a/4b (PNG + vector PDF)"
    ),
    "status": Stage(
        "unilearn.status",
        "where the workflow stands: one line per run (state, epoch, ETA, loss, Slurm job)",
    ),
    "predict": Stage(
        "unilearn.predict.cli",
        "run a fine-tuned or imported checkpoint on raw videos, frame folders and images",
    ),
    "params": Stage(
        "unilearn.models.params_cli",
        "print total and per-token active parameter counts of a model",
        f"{_ENGINE_ARGS}:add_params_arguments",
    ),
}


def _top_parser() -> argparse.ArgumentParser:
    width = max(len(name) for name in STAGES)
    stages = "\n".join(f"  {name:<{width}}  {stage.help}" for name, stage in STAGES.items())
    parser = argparse.ArgumentParser(
        prog="unilearn",
        description="UniLearn for dynamic facial expression recognition: data, training, evaluation.",
        epilog=f"stages:\n{stages}\n\n`unilearn STAGE --help` describes a stage.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an error (also: UNILEARN_DEBUG=1); allowed anywhere",
    )
    parser.add_argument(
        "stage", choices=list(STAGES), metavar="STAGE", help="pipeline stage to run"
    )
    return parser


def _version() -> str:
    from unilearn import __version__

    return f"unilearn {__version__}"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where there is one (no "(default: None)", "False" or "[]")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, [], argparse.SUPPRESS) or not action.help:
            return action.help or ""
        return super()._get_help_string(action)


def _docstring(module_name: str) -> str | None:
    """A module of this package's docstring, read from its source without importing it (nor its
    package: `unilearn.models` imports torch)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent
    path = root.joinpath(*module_name.split(".")[1:]).with_suffix(".py")
    if not path.is_file():
        return None
    return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))


def stage_parser(name: str) -> tuple[argparse.ArgumentParser, object]:
    """The argument parser of one stage and its module (None for a stage with its own
    `arguments` function: `importlib.import_module(stage.module)` it to run)."""
    stage = STAGES[name]
    if stage.arguments is not None:
        where, function = stage.arguments.split(":")
        add_arguments = getattr(importlib.import_module(where), function)
        module, doc = None, _docstring(stage.module)
    else:
        module = importlib.import_module(stage.module)
        add_arguments, doc = module.add_arguments, module.__doc__
    parser = argparse.ArgumentParser(
        prog=f"unilearn {name}",
        description=(doc or stage.help).strip(),
        formatter_class=_HelpFormatter,
    )
    add_arguments(parser)
    return parser, module


def main(argv: list[str] | None = None) -> int:
    """Run one stage; every error becomes a one-paragraph message and exit status 2 (bad input)
    or 1 (failed run), with the traceback only under --debug / UNILEARN_DEBUG=1."""
    from unilearn.errors import DEBUG_ENV, debug_requested, run_reporting

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    if debug:
        argv = [a for a in argv if a != "--debug"]
        os.environ[DEBUG_ENV] = "1"  # a stage run as a Slurm job inherits it
    prog = f"unilearn {argv[0]}" if argv and not argv[0].startswith("-") else "unilearn"
    return run_reporting(lambda: _run(argv), prog, debug)


def _run(argv: list[str]) -> int:
    top = _top_parser()
    if not argv or argv[0].startswith("-"):
        top.parse_args(argv or ["--help"])
        return 0
    top.parse_args(argv[:1])  # validates the stage name with a helpful message
    parser, module = stage_parser(argv[0])
    args = parser.parse_args(argv[1:])
    if module is None:
        module = importlib.import_module(STAGES[argv[0]].module)
    # The launcher re-submits the exact same stage command to Slurm (unilearn.launch).
    args.stage = argv[0]
    args.stage_argv = argv[1:]
    return int(module.main(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
