"""`unilearn tables TABLE` on the command line: the table (`unilearn.report.tables`), then each of
its paired comparisons added to the W&B run of the compared cell's pooled metrics (the run
`unilearn aggregate` started: same id, `layout.wandb_dir_beside`). W&B mode: `--wandb`, else the
config's `wandb.mode`, else WANDB_MODE, else offline; `disabled` logs nothing."""

from __future__ import annotations

import argparse

from unilearn import layout
from unilearn.report import tables


def add_arguments(parser: argparse.ArgumentParser) -> None:
    tables.add_arguments(parser)
    parser.add_argument("--wandb", choices=["offline", "online", "disabled"],
                        help="W&B mode of the paired comparisons (else the config's wandb.mode, "
                        "else WANDB_MODE, else offline)")  # fmt: skip


def main(args: argparse.Namespace) -> int:
    from unilearn.engine.wandb_log import log_paired, resolve_mode

    cfg, comparisons = tables.write_table(args)
    if resolve_mode(getattr(args, "wandb", None), cfg.wandb.mode) == "disabled":
        return 0
    logged = set()
    for c in comparisons:
        cell, ref, weights = c["cell"], c["reference"], c["weights"]
        if (cell, weights) in logged:  # a cell in two rows (Table 5) compares once
            continue
        logged.add((cell, weights))
        metrics = layout.metrics_path(args.runs, cell.run, cell.train, cell.test, weights)
        log_paired(cfg, c, cell.run, cell.train, cell.test, ref.run,
                   run_dir=layout.wandb_dir_beside(metrics), mode=getattr(args, "wandb", None))  # fmt: skip
    return 0
