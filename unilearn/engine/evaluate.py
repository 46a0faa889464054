"""`unilearn evaluate`: test a fine-tuned checkpoint on one dataset (and fold) with the paper's
2-clip protocol (SPEC 1.4: two clips uniformly sampled per video, softmax scores averaged).

Writes, beside each other:
  PRED.parquet             one row per clip: dataset, experiment, head, clip_id, fold, split,
                           label, pred, scores (list<float>), config_hash
  PRED.metrics.json        UAR / WAR / per-class recall / confusion of this fold
  PRED.expert_usage.json   tokens routed to each expert of each MoAE layer (Figure 4a)
  PRED.centres.parquet     mean pooled feature per class (class centres, Figure 4b)
AffectNet-7 is tested with the SFER head; DFER datasets with the DFER head.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from unilearn import launch
from unilearn.atomic import write_parquet, write_text
from unilearn.config import load_config
from unilearn.data.datasets import build_eval_loader
from unilearn.data.transforms import normalize
from unilearn.engine import distributed as D
from unilearn.engine.cli_args import add_evaluate_arguments as add_arguments  # noqa: F401
from unilearn.engine.finetune import check_fold
from unilearn.engine.metrics import classification_metrics
from unilearn.engine.wandb_log import log_evaluation, run_for, run_identity, target_name
from unilearn.models import expert_usage, reset_expert_usage
from unilearn.predict.model import evaluation_model

STAGE = "evaluate"


def main(args: argparse.Namespace) -> int:
    configs = args.config or [args.checkpoint.parent / "config.yaml"]
    cfg = load_config(configs, args.overrides)
    rc = launch.submit_if_requested(args, cfg.launcher.for_stage(STAGE))
    if rc is not None:
        return rc
    result = run(cfg, args.checkpoint, args.dataset, args.fold, args.store, args.out,
                 wandb_mode=args.wandb, progress=not args.no_progress,
                 model_name=args.model, labels=args.labels)  # fmt: skip
    if result:
        print(f"{args.dataset}{'' if args.fold is None else f' fold {args.fold}'}: "
              f"UAR {100 * result['uar']:.2f}  WAR {100 * result['war']:.2f}  -> {args.out}")  # fmt: skip
    return 0


def sibling(out: Path, suffix: str) -> Path:
    """`preds.parquet` -> `preds.metrics.json` etc."""
    return out.with_name(out.name.removesuffix(".parquet") + suffix)


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
        head = "sfer" if dataset == "affectnet7" else "dfer"
        if head not in meta.get("labels", {}):
            raise SystemExit(
                f"{checkpoint}: has no {head.upper()} head (heads: {sorted(meta.get('labels', {}))}); "
                f"it cannot be tested on {dataset}"
            )
        model.to(info.device).eval()
        data = build_eval_loader(
            store, dataset, fold=fold, split="test", task=head, num_frames=meta["num_frames"],
            input_size=meta["input_size"], batch_size=cfg.evaluate.batch_size,
            num_workers=cfg.data.num_workers, n_clips=cfg.evaluate.n_clips,
            frame_stride=meta.get("frame_stride", cfg.finetune.for_dataset(dataset).frame_stride),
            rank=info.rank,
            world_size=info.world_size,
        )  # fmt: skip
        dtype = D.autocast_dtype(cfg.runtime.precision, info.device)
        rows, labels, scores, features = predict(model, data, head, info, dtype, progress)
        usage = {b: D.all_reduce_sum(c, info) for b, c in sorted(expert_usage(model).items())}
        gathered = D.all_gather_objects((rows, labels, scores, features), info)
        if not info.is_main:
            return {}
        rows, labels, scores, features = (
            np.concatenate([g[i] for g in gathered]) for i in range(4)
        )
        order = np.argsort(rows, kind="stable")
        frame = data.dataset.table.iloc[rows[order]].reset_index(drop=True)
        return _write(out, frame, labels[order], scores[order], features[order], usage, meta,
                      dataset, fold, head, cfg, wandb_mode)  # fmt: skip
    finally:
        D.cleanup(info)


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    loader,
    head: str,
    info: D.DistInfo,
    dtype: torch.dtype | None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(row, label, mean softmax over clips [N, K], mean pooled feature over clips [N, D])."""
    reset_expert_usage(model)
    rows, labels, scores, feats = [], [], [], []
    for batch in tqdm(loader, desc=f"evaluate ({head})", unit="batch",
                      disable=not (progress and info.is_main), dynamic_ncols=True):  # fmt: skip
        x = batch["x"].to(info.device, non_blocking=True)
        if x.ndim == 5:  # one clip per sample (images)
            x = x.unsqueeze(1)
        b, n = x.shape[:2]
        x = normalize(x.flatten(0, 1))
        with torch.autocast(
            info.device.type, dtype=dtype or torch.float32, enabled=dtype is not None
        ):
            f = model.forward_features(x)
            logits = model.forward_head(f, task=head)
        # SPEC 1.4: softmax scores of the clips averaged
        scores.append(logits.float().softmax(-1).view(b, n, -1).mean(1).cpu())
        feats.append(f.float().view(b, n, -1).mean(1).cpu())
        rows.append(batch["row"].cpu())
        labels.append(batch["y"].cpu())
    if not rows:
        empty = np.zeros((0,), dtype=np.int64)
        return empty, empty, np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    return (
        torch.cat(rows).numpy(),
        torch.cat(labels).numpy(),
        torch.cat(scores).numpy(),
        torch.cat(feats).numpy(),
    )


def class_centres(features: np.ndarray, labels: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """Mean feature of each class (Figure 4b compares them across a DFER and the SFER dataset)."""
    out = []
    for k, name in enumerate(classes):
        members = features[labels == k]
        centre = members.mean(0) if len(members) else np.full(features.shape[1], np.nan)
        out.append({"class_id": k, "class_name": name, "n": int(len(members)),
                    "centre": centre.astype(np.float32).tolist()})  # fmt: skip
    return pd.DataFrame(out)


def _write(out, frame, labels, scores, features, usage, meta, dataset, fold, head, cfg, wandb_mode):
    classes = list(meta["labels"][head])
    if not np.array_equal(frame["label"].to_numpy(), labels):
        raise RuntimeError(f"{dataset}: labels of the loader and the manifest rows disagree")
    if scores.shape[1] != len(classes):
        raise RuntimeError(
            f"{dataset}: {scores.shape[1]} scores per clip for {len(classes)} classes"
        )
    preds = scores.argmax(1)
    ident = {"dataset": dataset, "experiment": meta.get("experiment"), "head": head,
             "config_hash": meta.get("config_hash")}  # fmt: skip
    table = pd.DataFrame({
        "dataset": dataset,
        "experiment": ident["experiment"],
        "head": head,
        "clip_id": frame["clip_id"].astype(str).to_numpy(),
        "fold": pd.array([fold] * len(frame), dtype="Int8"),
        "split": frame["split"].astype(str).to_numpy() if "split" in frame else "test",
        "label": labels.astype(np.int64),
        "pred": preds.astype(np.int64),
        "scores": [row.astype(np.float32) for row in scores],
        "config_hash": ident["config_hash"],
    })  # fmt: skip
    write_parquet(table, out)
    metrics = {**ident, "fold": fold, "checkpoint_train": meta.get("train"),
               **classification_metrics(labels, preds, len(classes), classes)}  # fmt: skip
    write_text(sibling(out, ".metrics.json"), json.dumps(metrics, indent=2) + "\n")
    layers = {str(b): c.tolist() for b, c in usage.items()}
    write_text(sibling(out, ".expert_usage.json"),
               json.dumps({**ident, "fold": fold, "layers": layers}, indent=2) + "\n")  # fmt: skip
    centres = class_centres(features, labels, classes).assign(**ident, fold=fold)
    write_parquet(centres, sibling(out, ".centres.parquet"))

    run_name = meta.get("run") or ident["experiment"]
    identity = run_identity(run_name, ident["experiment"], meta.get("dataset") or dataset, fold,
                            meta.get("init")) | {"test_dataset": dataset}  # fmt: skip
    wandb = run_for(cfg, job_type=STAGE, group=f"{cfg.name}/{run_name}",
                    name=f"{target_name(meta.get('dataset') or dataset, fold)}-on-{dataset}",
                    run_dir=out.parent / f".wandb-{out.stem}", is_main=True, mode=wandb_mode,
                    identity=identity)  # fmt: skip
    log_evaluation(wandb, metrics, usage=layers)
    wandb.finish()
    return metrics
