"""What decides a run's training batches, as one frozen value per stage (torch-free):
`FinetuneLoaderSpec` and `PretrainLoaderSpec`. Every field is required: the engine fills them
from the config sections (`unilearn.engine.loader.finetune_spec` / `pretrain_spec`, where each
default is the config's), the loaders build from them (`unilearn.data.loaders`), and
`unilearn config` counts its steps per epoch with the same rows and sampler
(`finetune_rows` + `finetune_sampler`, `pretrain_rows` + `pretrain_sampler`), so the two cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from unilearn.data.samplers import JointBatchSampler, PretrainBatchSampler
from unilearn.data.store import load_store_table
from unilearn.data.validation_split import Holdout


@dataclass(frozen=True, kw_only=True)
class TrainLoaderSpec:
    """What both training stages' loaders take: the store, the clip shape, the per-rank batch
    and the shard of this rank, and how the DataLoader loads (workers, pinned memory)."""

    store: Path
    num_frames: int
    input_size: int
    frame_stride: int  # temporal stride of training clips, in source frames
    batch_size: int  # per rank
    seed: int
    rank: int
    world_size: int
    num_workers: int
    pin_memory: bool


@dataclass(frozen=True, kw_only=True)
class FinetuneLoaderSpec(TrainLoaderSpec):
    """Joint (or single-task) fine-tuning (`finetune:`): the DFER train split of `dfer_dataset`
    (`fold`; None for FERV39K), `sfer_fraction` of the SFER train split of `sfer_dataset`, the
    rows of `holdout` (a validation split) left out."""

    dfer_dataset: str | None
    sfer_dataset: str | None
    fold: int | None
    holdout: Holdout | None
    # the SFER share per epoch: `finetune.sfer_proportion` when both tasks train, 1.0 when SFER
    # trains alone (`unilearn.catalogue.sfer_fraction`, applied by the spec's builder)
    sfer_fraction: float
    sfer_sampling: str  # subset | balanced
    sfer_batch_factor: int
    randaug: str | None
    randaug_order: str
    crop_scale: tuple[float, float]
    random_erasing: float
    sfer_augment: str  # video | resize_crop
    sfer_resize: float
    sfer_randaug: str | None


@dataclass(frozen=True, kw_only=True)
class PretrainLoaderSpec(TrainLoaderSpec):
    """Dual-modal MAE pre-training (`pretrain:`): image batches of `image_dataset` and video
    batches of `video_dataset` (either None when the mode has no such batches)."""

    image_dataset: str | None
    video_dataset: str | None
    image_proportion: float
    repeated_views: int
    video_repeat: float
    augment: str  # multiscale | resized
    image_crop_scale: tuple[float, float]
    video_short_side: float
    video_crop_scale: tuple[float, float]
    crop_on_device: bool


Rows = dict[str, "pd.DataFrame | None"]  # a source ("dfer", "sfer"; "image", "video") -> rows


def finetune_rows(spec: FinetuneLoaderSpec) -> Rows:
    """The store rows a fine-tuning trains on per task: the train split of its DFER dataset
    (fold) and of its SFER dataset, less the validation split of `holdout` where it is that
    dataset's; None for a task that does not train."""
    return {
        "dfer": _train_rows(spec, spec.dfer_dataset, spec.fold),
        "sfer": _train_rows(spec, spec.sfer_dataset, None),
    }


def pretrain_rows(spec: PretrainLoaderSpec) -> Rows:
    """The store rows a pre-training draws its image and its video batches from (None: none)."""
    return {
        "image": _train_rows(spec, spec.image_dataset, None),
        "video": _train_rows(spec, spec.video_dataset, None),
    }


def _train_rows(spec: TrainLoaderSpec, dataset: str | None, fold: int | None):
    if not dataset:
        return None
    table = load_store_table(spec.store, dataset, fold, "train")
    holdout = getattr(spec, "holdout", None)
    return table if holdout is None else holdout.training_rows(table, dataset)


def finetune_sampler(spec: FinetuneLoaderSpec, rows: Rows) -> JointBatchSampler:
    """The joint batch sampler over the training rows of each task (`finetune_rows`);
    `sfer_sampling` "balanced" draws the SFER rows by class (the authors')."""
    if spec.sfer_sampling not in ("subset", "balanced"):
        raise ValueError(f"sfer_sampling {spec.sfer_sampling!r}: expected subset or balanced")
    dfer, sfer = rows["dfer"], rows["sfer"]
    balanced = spec.sfer_sampling == "balanced" and sfer is not None
    return JointBatchSampler(
        dfer_size=_size(dfer),
        sfer_size=_size(sfer),
        batch_size=spec.batch_size,
        sfer_proportion=spec.sfer_fraction,
        seed=spec.seed,
        rank=spec.rank,
        world_size=spec.world_size,
        sfer_labels=sfer["label"].astype(int).tolist() if balanced else None,
        sfer_batch_factor=spec.sfer_batch_factor,
    )


def pretrain_sampler(spec: PretrainLoaderSpec, rows: Rows) -> PretrainBatchSampler:
    """The image/video batch sampler over the training rows of each modality (`pretrain_rows`)."""
    return PretrainBatchSampler(
        image_size=_size(rows["image"]),
        video_size=_size(rows["video"]),
        batch_size=spec.batch_size,
        image_proportion=spec.image_proportion,
        seed=spec.seed,
        rank=spec.rank,
        world_size=spec.world_size,
        repeated_views=spec.repeated_views,
        video_repeat=spec.video_repeat,
    )


def _size(rows: pd.DataFrame | None) -> int:
    return 0 if rows is None else len(rows)
