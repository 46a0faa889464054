"""How long a GPU stage's Slurm job needs: training FLOPs of the run (a closed-form FLOP model of
the ViT, MoAE and MAE decoder) / (GPUs x peak x MFU), times a safety factor, plus start-up.

Torch-free, so the waiting submitter (`python -m unilearn.launch`) computes it without importing
the stage. The FLOP model counts 2 FLOPs per multiply-add of the matmuls (what torch's
FlopCounterMode counts): per encoder block and token 24 d^2 (qkv, projection, MLP ratio 4) plus
4 N d for attention over N tokens; backward = 2x forward. It agrees with the counts of
bench/train_throughput.py (ViT-B fine-tune clip 412 GFLOP counted, 470 here with attention; MAE
pre-train clip 61 counted, 66 here) to within the safety factor. Clip counts come from the official
splits (the paper's datasets), so the estimate is the same for every fold and needs no store.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from unilearn.catalogue import (
    ADAPTER_RATIO,
    AFFECTNET_TRAIN_IMAGES,
    AFFECTNET_VAL_PER_CLASS,
    PATCH_SIZE,
    VOXCELEB2_DEV_CLIPS,
    moae_block_indices,
    pretrain_sources,
)
from unilearn.errors import InputError

SPLIT_COUNTS_PATH = Path(__file__).parents[1] / "doctor" / "official_split_counts.json"


def split_size(dataset: str, split: str, fold: int | None = None) -> int:
    """Clips of one official split: `dfew`/`mafw` (fold 1-5, or the mean fold), `ferv39k`,
    `affectnet` (8 classes), `affectnet7`, `voxceleb2` (train only)."""
    if dataset == "voxceleb2":
        return VOXCELEB2_DEV_CLIPS
    if dataset in ("affectnet", "affectnet7"):
        if split == "test":
            return AFFECTNET_VAL_PER_CLASS * 7
        return AFFECTNET_TRAIN_IMAGES[dataset]
    counts = json.loads(SPLIT_COUNTS_PATH.read_text())[dataset]
    sizes = {k: sum(v.values()) for k, v in counts.items()}
    keys = [
        k for k in sizes if k.endswith(f"/{split}") and (fold is None or k == f"fold{fold}/{split}")
    ]
    return round(sum(sizes[k] for k in keys) / len(keys))


def dense_flops(tokens: int, width: int, depth: int) -> float:
    """Forward FLOPs of the linear layers of `depth` ViT blocks (qkv, projection, MLP ratio 4)."""
    return depth * 24 * tokens * width**2


def attention_flops(tokens: int, width: int, depth: int) -> float:
    """Forward FLOPs of the attention itself (q k^T and attention x v) in `depth` blocks."""
    return depth * 4 * tokens**2 * width


def patch_embed_flops(tokens: int, width: int, tubelet: int, patch: int = PATCH_SIZE) -> float:
    """Forward FLOPs of the tubelet embedding (one tubelet x patch x patch x 3 -> width map)."""
    return 2 * tokens * 3 * tubelet * patch * patch * width


def encoder_flops(tokens: int, width: int, depth: int) -> float:
    """Forward FLOPs of `depth` pre-norm ViT blocks over `tokens` tokens of width `width`."""
    return dense_flops(tokens, width, depth) + attention_flops(tokens, width, depth)


def moae_flops(tokens: int, width: int, n_blocks: int, top_k: int, n_experts: int) -> float:
    """Forward FLOPs the MoAE adds (Eq. 8-12): per token, k adapters of bottleneck d/4 (two
    d x d/4 matmuls each) and the router (d x n)."""
    return (
        n_blocks
        * tokens
        * (top_k * 2 * 2 * width * int(width * ADAPTER_RATIO) + 2 * width * n_experts)
    )


# `unilearn evaluate` takes a checkpoint, no --experiment: its test is estimated as Table 1's model.
EVALUATE_EXPERIMENT = "unilearn"


def _required(argv: dict[str, Any], key: str, stage: str) -> Any:
    if argv.get(key) is None:
        raise InputError(f"{stage}: no --{key} in its arguments (the time estimate reads it)")
    return argv[key]


def run_flops(cfg: Any, stage: str, argv: dict[str, Any]) -> float:
    """Training (or test) FLOPs of one stage run with the resolved config `cfg`; `argv` holds the
    stage's `mode`, `experiment`, `dataset`, `fold` where it has them (each stage's required
    flags: pretrain --mode, finetune --experiment --dataset, evaluate --dataset)."""
    if stage == "pretrain":
        m = cfg.model
        width, depth, _ = m.encoder_shape
        patches, video_tokens = _tokens(m)
        p = cfg.pretrain
        mode = _required(argv, "mode", stage)
        dec = m.decoder

        def mae(tokens: int, ratio: float) -> float:
            visible = max(1, round(tokens * (1 - ratio)))
            return 3 * (
                encoder_flops(visible, width, depth) + encoder_flops(tokens, dec.width, dec.depth)
            )

        image, video = pretrain_sources(mode, p.image_dataset, p.video_dataset)
        # views per epoch: `video_repeat` of the clips, each cut into `repeated_views` views
        videos = split_size(video, "train") * p.video_repeat * p.repeated_views if video else 0
        n_images = (split_size(image, "train") if image else 0) * p.image_proportion
        per_epoch = videos * mae(video_tokens, p.mask_ratio_video) + n_images * mae(
            patches, p.mask_ratio_image
        )
        return p.epochs * per_epoch
    dataset = _required(argv, "dataset", stage)
    if stage == "finetune":
        resolved = cfg.resolve_experiment(_required(argv, "experiment", stage), dataset)
    else:  # evaluate: Table 1's model as fine-tuned on DFEW
        resolved = cfg.resolve_experiment(EVALUATE_EXPERIMENT, "dfew")
    cfg = resolved.config or cfg  # with the experiment's overrides, the model's shape included
    m = cfg.model
    width, depth, _ = m.encoder_shape
    patches, video_tokens = _tokens(m)
    moae = m.moae
    # the blocks the config's `model.moae.position` gives a MoAE (none in a plain ViT)
    n_moae = len(moae_block_indices(depth, moae.position)) if resolved.arch != "vit" else 0

    def model(tokens: int) -> float:
        return (
            patch_embed_flops(tokens, width, m.tubelet_size)
            + encoder_flops(tokens, width, depth)
            + moae_flops(tokens, width, n_moae, moae.top_k, moae.n_experts)
        )

    fold = argv.get("fold")
    if stage == "evaluate":
        if dataset == "affectnet7":
            return split_size(dataset, "test") * model(patches)
        return cfg.evaluate.n_clips * split_size(dataset, "test", fold) * model(video_tokens)
    f = cfg.finetune
    dfer, sfer = resolved.dfer_dataset, resolved.sfer_dataset  # None where the task does not train
    total = 0.0
    if dfer:
        total += split_size(dfer, "train", fold) * 3 * model(video_tokens)
    if sfer:
        images = resolved.sfer_fraction * split_size(sfer, "train")
        total += images * 3 * model(patches)
    return f.epochs * total


def _tokens(model: Any) -> tuple[int, int]:
    """(tokens of an image, tokens of a clip) of the config's `model` section."""
    patches = (model.input_size // PATCH_SIZE) ** 2
    return patches, model.num_frames // model.tubelet_size * patches


def estimate_time_min(cfg: Any, stage: str, argv: dict[str, Any], gpus: int) -> int:
    """Slurm time limit in minutes: FLOPs / (gpus x peak x MFU) x safety + start-up, rounded up to
    10 minutes, capped at `launcher.time_estimate.max_min` (longer runs requeue and resume)."""
    est = cfg.launcher.time_estimate
    seconds = run_flops(cfg, stage, argv) / (max(1, gpus) * est.gpu_peak_tflops * 1e12 * est.mfu)
    minutes = seconds * est.safety / 60 + est.startup_min
    return int(min(est.max_min, max(est.min_min, 10 * math.ceil(minutes / 10))))
