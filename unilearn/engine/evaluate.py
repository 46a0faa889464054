"""`unilearn evaluate`: test a checkpoint file (an imported one, `checkpoint-best.pt`, or a
re-test) on one dataset (and fold) with the paper's 2-clip protocol (two clips uniformly sampled
per video, softmax scores averaged), the same test the fine-tuning job runs on the model it holds
(`unilearn.engine.scoring`). AffectNet-7 is tested with the SFER head, DFER datasets with the DFER
head.

Writes PRED.parquet (one row per clip scored: dataset, experiment, head, clip_id, fold, split,
label, pred, scores, config_hash) and beside it PRED.quarantine.parquet (test clips whose store
record could not be read, with the reason), PRED.metrics.json (UAR, WAR, per-class recall,
confusion), PRED.expert_usage.json (tokens per expert of each MoAE layer, Figure 4a) and
PRED.centres.parquet (class centres, Figure 4b). A test split with no readable clip, or more
unreadable ones than `evaluate.max_unreadable`, fails (exit status 1) naming the clips and store
keys (and the shards, when none could be read).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from unilearn.config import load_config
from unilearn.engine import distributed as D
from unilearn.engine.scoring import (
    check_fold,
    check_test_set,
    head_for,
    log_test_run,
    test_loader,
    test_model,
    write_predictions,
)
from unilearn.launch.submit import submit_if_requested
from unilearn.layout import QUARANTINE, RUN_FILES, sidecar_path
from unilearn.predict.model import evaluation_model

STAGE = "evaluate"


def main(args: argparse.Namespace) -> int:
    configs = args.config or [args.checkpoint.parent / RUN_FILES["config"]]
    cfg = load_config(configs, args.overrides)
    if (rc := submit_if_requested(args, cfg.launcher.for_stage(STAGE))) is not None:
        return rc  # the stage ran as a Slurm job
    result = run(cfg, args.checkpoint, args.dataset, args.fold, args.store, args.out,
                 wandb_mode=args.wandb, progress=not args.no_progress,
                 model_name=args.model, labels=args.labels)  # fmt: skip
    if result:
        print(f"{args.dataset}{'' if args.fold is None else f' fold {args.fold}'}: "
              f"UAR {100 * result['uar']:.2f}  WAR {100 * result['war']:.2f}  -> {args.out}")  # fmt: skip
    return 0


def run(
    cfg,
    checkpoint: Path,
    dataset: str,
    fold: int | None,
    store: Path,
    out: Path,
    *,
    wandb_mode: str | None = None,
    progress: bool = True,
    model_name: str | None = None,
    labels: str | None = None,
) -> dict[str, Any]:
    """Evaluate; returns this fold's metrics on rank 0 (an empty dict on other ranks).
    `model_name` and `labels` are for imported checkpoints (`evaluation_model`)."""
    check_fold(dataset, fold)
    info = D.init_distributed(cfg.runtime.device)
    D.set_threads(cfg.runtime.threads)
    try:
        model, meta = evaluation_model(checkpoint, model_name, labels)
        head = head_for(dataset)
        if head not in meta.get("labels", {}):
            raise SystemExit(
                f"{checkpoint}: has no {head.upper()} head (heads: {sorted(meta.get('labels', {}))}); "
                f"it cannot be tested on {dataset}"
            )
        model.to(info.device)
        loader = test_loader(cfg, store, dataset, fold, meta, info)
        dtype = D.autocast_dtype(cfg.runtime.precision, info.device)
        result = test_model(model, loader, head, info, dtype, progress)
        if not info.is_main:
            return {}
        metrics = write_predictions(out, result, meta, dataset, fold)
        check_test_set(result, dataset, fold, cfg.evaluate.max_unreadable,
                       sidecar_path(out, QUARANTINE))  # fmt: skip
        log_test_run(cfg, out, meta, dataset, fold, metrics, result, wandb_mode)
        return metrics
    finally:
        D.cleanup(info)
