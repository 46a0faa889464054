"""The loaders the engine calls: `build_finetune_loader`, `build_pretrain_loader` and
`build_eval_loader` put the `ClipDataset`s (`unilearn.data.clip_dataset`) of store tables
(`unilearn.data.store_table.load_store_table`) behind a batch sampler (`unilearn.data.samplers`)
and a collation (`unilearn.data.batches`). The training ones hand over the parts (a `TrainSet`:
dataset, batch sampler, collation, workers; the engine makes one DataLoader per run of them),
the test one a DataLoader.

Batches are `{"x": uint8 [B, C, T, H, W], "y": int64 [B], "task": "sfer"|"dfer", "row": int64
[B]}` (pre-training: `"modality": "image"|"video"` instead of `"task"`; evaluation: `x` is
`[B, n_clips, C, T, H, W]`). `row` indexes `loader.dataset.tables[source]` (the store rows).
An eval batch also names the test clips it could not read in `batch["unreadable"]` (rows and
reasons; see `unilearn.data.clip_dataset`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from unilearn.catalogue import DFER_RANDAUGMENT, SFER_RANDAUGMENT, sfer_fraction
from unilearn.data.batches import EvalCollate, SourceDataset, collate_clips, collate_pretrain
from unilearn.data.clip_dataset import ClipDataset
from unilearn.data.store_table import load_store_table
from unilearn.data.transforms import (
    ResizeCropImageTransform,
    ResizedCropPretrainTransform,
    TrainClipTransform,
)
from unilearn.data.validation_split import Holdout


def _worker_init(_: int) -> None:
    import cv2

    torch.set_num_threads(1)  # workers parallelise over clips
    cv2.setNumThreads(1)


@dataclass
class TrainSet:
    """Training batches of one source each, as parts: `dataset` addressed by the index lists of
    `batch_sampler` (epoch e's after `set_epoch(e)`, a pure function of seed and e) and
    `collate_fn`. No DataLoader is made here: the engine makes ONE per run, over the batches
    from its resume step on (`unilearn.engine.loader`). Iterating a TrainSet loads the current
    epoch through a DataLoader of its own (tests, benchmarks)."""

    dataset: Dataset
    batch_sampler: Any  # set_epoch(epoch), __len__ (batches per epoch on this rank), __iter__
    collate_fn: Callable
    num_workers: int = 0
    worker_init_fn: Callable | None = None

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def set_epoch(self, epoch: int) -> None:
        self.batch_sampler.set_epoch(epoch)

    def __iter__(self):
        loader = _data_loader(self.dataset, self.num_workers, batch_sampler=self.batch_sampler,
                              collate_fn=self.collate_fn)  # fmt: skip
        return iter(loader)


def _data_loader(dataset, num_workers: int, **kw) -> DataLoader:
    workers = max(0, int(num_workers))
    extra = (
        {"persistent_workers": True, "prefetch_factor": 4, "worker_init_fn": _worker_init}
        if workers
        else {}
    )
    return DataLoader(
        dataset, num_workers=workers, pin_memory=torch.cuda.is_available(), **extra, **kw
    )


def build_finetune_loader(
    store: str | Path,
    dfer_dataset: str | None,
    sfer_dataset: str | None = None,
    *,
    fold: int | None = None,
    num_frames: int = 16,
    input_size: int = 160,
    batch_size: int = 16,
    num_workers: int = 2,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    sfer_proportion: float = 0.5,
    randaug: str | None = DFER_RANDAUGMENT,
    randaug_order: str = "before_crop",
    frame_stride: int = 4,
    resample_sfer_each_epoch: bool = False,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    random_erasing: float = 0.0,
    sfer_sampling: str = "subset",
    sfer_batch_factor: int = 1,
    sfer_augment: str = "video",
    sfer_resize: float = 1.2,
    sfer_randaug: str | None = SFER_RANDAUGMENT,
    holdout: Holdout | None = None,
) -> TrainSet:
    """Joint (or single-task) fine-tuning loader: batches from ONE source each, `task` "dfer" or
    "sfer". `fold` selects the DFER dataset's fold (None for FERV39K). `sfer_proportion` is the
    fraction of the SFER training set used, applied only when both tasks train: `sfer_sampling`
    "subset" = a fixed uniform subset per run (unless `resample_sfer_each_epoch`), "balanced" = a
    fresh class-balanced draw with replacement each epoch (the authors'). SFER batches hold
    `sfer_batch_factor` x `batch_size` images, augmented as the videos (`sfer_augment` "video") or
    by the authors' resize-and-crop (`"resize_crop"`). `batch_size` is per rank. `holdout`: its
    dataset trains on the rows its validation split leaves (`Holdout.rest`)."""
    from unilearn.data.samplers import JointBatchSampler

    if sfer_sampling not in ("subset", "balanced"):
        raise ValueError(f"sfer_sampling {sfer_sampling!r}: expected subset or balanced")
    kw = {"num_frames": num_frames, "input_size": input_size, "frame_stride": frame_stride}
    video_aug = TrainClipTransform(
        input_size, randaug, scale=tuple(crop_scale), erasing=random_erasing,
        randaug_order=randaug_order,
    )  # fmt: skip
    if sfer_augment == "resize_crop":
        image_aug = ResizeCropImageTransform(
            input_size, round(sfer_resize * input_size), sfer_randaug, erasing=random_erasing
        )
    elif sfer_augment == "video":
        image_aug = video_aug
    else:
        raise ValueError(f"sfer_augment {sfer_augment!r}: expected video or resize_crop")
    sources: dict[str, ClipDataset] = {}
    if dfer_dataset:
        sources["dfer"] = _train_source(
            store, dfer_dataset, fold, "train", transform=video_aug, holdout=holdout, **kw
        )
    if sfer_dataset:
        sources["sfer"] = _train_source(
            store, sfer_dataset, None, "train", transform=image_aug, holdout=holdout, **kw
        )
    if not sources:
        raise ValueError("build_finetune_loader needs a DFER dataset, an SFER dataset or both")
    sampler = JointBatchSampler(
        dfer_size=len(sources.get("dfer", [])),
        sfer_size=len(sources.get("sfer", [])),
        batch_size=batch_size,
        sfer_proportion=sfer_fraction(sfer_proportion, "dfer" in sources, "sfer" in sources),
        seed=seed,
        rank=rank,
        world_size=world_size,
        resample_sfer_each_epoch=resample_sfer_each_epoch,
        sfer_labels=(
            sources["sfer"].labels if sfer_sampling == "balanced" and "sfer" in sources else None
        ),
        sfer_batch_factor=sfer_batch_factor,
    )
    return _one_source_batches(sources, sampler, num_workers, collate_clips)


def build_pretrain_loader(
    store: str | Path,
    image_dataset: str | None,
    video_dataset: str | None,
    *,
    num_frames: int = 16,
    input_size: int = 160,
    batch_size: int = 16,
    num_workers: int = 2,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    frame_stride: int = 4,
    image_proportion: float = 1.0,
    augment: str = "multiscale",
    image_crop_scale: tuple[float, float] = (0.2, 1.0),
    video_short_side: float = 1.2,
    video_crop_scale: tuple[float, float] = (0.08, 1.0),
    repeated_views: int = 1,
    video_repeat: float = 1.0,
    crop_on_device: bool = False,
) -> TrainSet:
    """Dual-modal MAE loader: batches of images (`modality` "image", x `[B, C, 2, S, S]`) and of
    videos ("video", `[B, C, num_frames, S, S]`) interleaved. A video dataset given as
    `image_dataset` (video+video ablation) contributes one random frame per clip as an image.
    Labels are -1 for unlabeled data. `image_proportion`: fraction of the image set per epoch.
    `augment`: "multiscale" (VideoMAE's crop) or "resized" (the authors' random resized crops).
    Repeated sampling: each video is decoded once and gives `repeated_views` rows of its batch
    (`batch_size` counts views); `video_repeat` of the videos are drawn afresh each epoch.
    `crop_on_device` (with "resized" and repeated views): video batches carry each decoded clip
    once, `x` `[B / views, T, H, W, 3]`, plus `boxes`/`flip` of its views; the engine cuts them."""
    from unilearn.data.samplers import PretrainBatchSampler

    kw = {"num_frames": num_frames, "input_size": input_size, "frame_stride": frame_stride}
    image_aug = video_aug = None
    if augment == "resized":
        image_aug = ResizedCropPretrainTransform(input_size, image_crop_scale, hflip=0.5)
        video_aug = ResizedCropPretrainTransform(
            input_size, video_crop_scale, short_side=round(video_short_side * input_size)
        )
    elif augment != "multiscale":
        raise ValueError(f"augment {augment!r}: expected multiscale or resized")
    sources: dict[str, ClipDataset] = {}
    if image_dataset:
        sources["image"] = _train_source(
            store, image_dataset, None, "pretrain_image", transform=image_aug, **kw
        )
    if video_dataset:
        sources["video"] = _train_source(
            store, video_dataset, None, "pretrain", transform=video_aug, views=repeated_views,
            crop_on_device=crop_on_device and augment == "resized" and repeated_views > 1, **kw,
        )  # fmt: skip
    if not sources:
        raise ValueError("build_pretrain_loader needs an image dataset, a video dataset or both")
    sampler = PretrainBatchSampler(
        image_size=len(sources.get("image", [])),
        video_size=len(sources.get("video", [])),
        batch_size=batch_size,
        image_proportion=image_proportion,
        seed=seed,
        rank=rank,
        world_size=world_size,
        repeated_views=repeated_views,
        video_repeat=video_repeat,
    )
    return _one_source_batches(sources, sampler, num_workers, collate_pretrain)


def _train_source(
    store: str | Path, dataset: str, fold: int | None, mode: str,
    holdout: Holdout | None = None, **kw,
) -> ClipDataset:  # fmt: skip
    """The train rows of (dataset, fold) as one source of a one-source-per-batch loader (less
    the validation split of `holdout`, when it is this dataset's)."""
    table = load_store_table(store, dataset, fold, "train")
    if holdout is not None:
        table = holdout.training_rows(table, dataset)
    return ClipDataset(store, table, mode, **kw)


def _one_source_batches(
    sources: dict[str, ClipDataset], sampler, num_workers: int, collate_fn
) -> TrainSet:
    """The batches drawn by `sampler`, each from one of `sources`."""
    workers = max(0, int(num_workers))
    return TrainSet(SourceDataset(sources), sampler, collate_fn, workers,
                    _worker_init if workers else None)  # fmt: skip


def build_eval_loader(
    store: str | Path,
    dataset: str,
    *,
    fold: int | None = None,
    split: str = "test",
    task: str = "dfer",
    num_frames: int = 16,
    input_size: int = 160,
    batch_size: int = 16,
    num_workers: int = 2,
    n_clips: int = 2,
    frame_stride: int = 4,
    rank: int = 0,
    world_size: int = 1,
    holdout: Holdout | None = None,
    placement_seed: int | None = None,
) -> DataLoader:
    """Test loader over every row of (dataset, fold, split), in order (rank r of W gets rows
    r, r+W, ...): `x` `[B, n_clips, C, T, S, S]` (images: n_clips = 1), `task` as given,
    `row` the position in `loader.dataset.table` (for writing predictions). `holdout`: only the
    validation split of the rows (`Holdout.held`). `placement_seed`: the authors' validation,
    one clip per video at a position of (seed, epoch, video), the epoch set by `set_epoch`
    (`EpochLoader`; `n_clips` is then 1)."""
    table = load_store_table(store, dataset, fold, split)
    if holdout is not None:
        table = holdout.held(table)
    ds = ClipDataset(
        store,
        table,
        mode="eval",
        num_frames=num_frames,
        input_size=input_size,
        frame_stride=frame_stride,
        n_clips=1 if placement_seed is not None else n_clips,
        placement_seed=placement_seed,
    )
    indices = list(range(rank, len(ds), world_size))
    if placement_seed is None:
        sampler = torch.utils.data.BatchSampler(indices, batch_size, drop_last=False)
        return _data_loader(ds, num_workers, batch_sampler=sampler, collate_fn=EvalCollate(task))
    workers = max(0, int(num_workers))
    extra = {"persistent_workers": True, "worker_init_fn": _worker_init} if workers else {}
    return EpochLoader(ds, num_workers=workers, pin_memory=torch.cuda.is_available(),
                       batch_sampler=EpochBatches(indices, batch_size),
                       collate_fn=EvalCollate(task), **extra)  # fmt: skip


class EpochBatches:
    """Batches of `(index, epoch)` items over `indices` in order (the epoch set in the main
    process, so persistent workers see it through the items)."""

    def __init__(self, indices: list[int], batch_size: int) -> None:
        self.indices, self.batch_size, self.epoch = indices, batch_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def __iter__(self):
        for i in range(0, len(self.indices), self.batch_size):
            yield [(j, self.epoch) for j in self.indices[i : i + self.batch_size]]


class EpochLoader(DataLoader):
    """A test DataLoader whose clips depend on the epoch (`set_epoch`)."""

    def set_epoch(self, epoch: int) -> None:
        self.batch_sampler.set_epoch(epoch)
