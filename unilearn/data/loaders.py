"""The loaders the engine calls: `build_finetune_loader`, `build_pretrain_loader` and
`build_eval_loader` put the `ClipDataset`s (`unilearn.data.clip_dataset`) of store tables
(`unilearn.data.store.load_store_table`) behind a batch sampler (`unilearn.data.samplers`)
and a collation (`unilearn.data.batches`). The training ones take one spec each
(`unilearn.data.loader_spec`) and give a `TrainSet`, whose `run` is the run's ONE DataLoader from
its resume step (a run resumes exactly from its step count alone); the test one a DataLoader.

Batches are `{"x": uint8 [B, C, T, H, W], "y": int64 [B], "task": "sfer"|"dfer", "row": int64
[B]}` (pre-training: `"modality": "image"|"video"` instead of `"task"`; evaluation: `x` is
`[B, n_clips, C, T, H, W]`). `row` indexes `loader.dataset.tables[source]` (the store rows).
An eval batch also names the test clips it could not read in `batch["unreadable"]` (rows and
reasons; see `unilearn.data.clip_dataset`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset

from unilearn.data.batches import EvalCollate, SourceDataset, collate_clips, collate_pretrain
from unilearn.data.clip_dataset import ClipDataset
from unilearn.data.loader_spec import (
    FinetuneLoaderSpec,
    PretrainLoaderSpec,
    TrainLoaderSpec,
    finetune_rows,
    finetune_sampler,
    pretrain_rows,
    pretrain_sampler,
)
from unilearn.data.store import load_store_table
from unilearn.data.transforms import (
    EvalClipTransform,
    ResizeCropImageTransform,
    ResizedCropPretrainTransform,
    TrainClipTransform,
)
from unilearn.data.validation_split import Holdout


def _worker_init(_: int) -> None:
    import cv2

    torch.set_num_threads(1)  # workers parallelise over clips
    cv2.setNumThreads(1)


class RunBatches:
    """The index lists of global steps [start, end): epoch e's batches (after `set_epoch(e)`) in
    order, starting part-way into the first epoch when `start` is not on an epoch boundary."""

    def __init__(self, batch_sampler, start: int, end: int) -> None:
        self.batch_sampler = batch_sampler
        self.start, self.end = start, end

    def __iter__(self) -> Iterator[Any]:
        per_epoch = len(self.batch_sampler)
        step = self.start
        while step < self.end:
            epoch, offset = divmod(step, per_epoch)
            # Called only once the previous epoch's index lists are all out: the DataLoader
            # prefetches the next epoch while the model still trains on this one.
            self.batch_sampler.set_epoch(epoch)
            count = min(per_epoch - offset, self.end - step)
            yield from itertools.islice(iter(self.batch_sampler), offset, offset + count)
            step += count

    def __len__(self) -> int:
        return max(self.end - self.start, 0)


@dataclass
class TrainSet:
    """A run's training batches, one source each: `dataset` addressed by the index lists of
    `batch_sampler` (epoch e's after `set_epoch(e)`, a pure function of seed and e), collated by
    `collate_fn`, loaded by `num_workers` worker processes into pinned memory or not.

    `run(start, end, seed)` is the run's ONE DataLoader over global steps [start, end) (its
    workers start once, not once per epoch, and prefetch across epoch boundaries; its own
    torch generator, so the global RNG never moves); `batches(...)` the same read ahead by
    `fetch_ahead` (the engine's thread, `unilearn.engine.prefetch.Prefetcher`). Resuming skips
    batches by index, never by loading their clips. Iterating a TrainSet loads its current
    epoch (tests, benchmarks)."""

    dataset: Dataset
    batch_sampler: Any  # set_epoch(epoch), __len__ (batches per epoch on this rank), __iter__
    collate_fn: Callable
    num_workers: int
    pin_memory: bool
    fetch_ahead: Callable[[Iterable], Iterator]  # DataLoader -> its batches, read ahead

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def steps_per_epoch(self) -> int:
        return len(self.batch_sampler)

    def set_epoch(self, epoch: int) -> None:
        self.batch_sampler.set_epoch(epoch)

    def run(self, start: int, end: int, seed: int) -> DataLoader:
        """The DataLoader over the batches of global steps [start, end)."""
        generator = torch.Generator().manual_seed(seed * 100_003 + start)
        return self._loader(RunBatches(self.batch_sampler, start, end), generator)

    def batches(self, start: int, end: int, seed: int):
        """The run's batches from step `start` to `end`, read ahead (`close()` it: that stops
        the reading and the loader's workers)."""
        return self.fetch_ahead(self.run(start, end, seed=seed))

    def __iter__(self):
        return iter(self._loader(self.batch_sampler, None))

    def _loader(self, batch_sampler, generator) -> DataLoader:
        workers = max(0, int(self.num_workers))
        return DataLoader(
            self.dataset,
            batch_sampler=batch_sampler,
            collate_fn=self.collate_fn,
            num_workers=workers,
            pin_memory=self.pin_memory,
            generator=generator,
            worker_init_fn=_worker_init if workers else None,
            prefetch_factor=4 if workers else None,
        )


def build_finetune_loader(spec: FinetuneLoaderSpec, fetch_ahead: Callable) -> TrainSet:
    """Joint (or single-task) fine-tuning batches of `spec`: from ONE source each, `task` "dfer"
    or "sfer". `spec.sfer_fraction` of the SFER training rows per epoch: `sfer_sampling`
    "subset" = a fixed uniform subset per run, "balanced" = a fresh class-balanced draw with
    replacement each epoch (the authors'). SFER batches hold `sfer_batch_factor` x `batch_size`
    images, augmented as the videos (`sfer_augment` "video") or by the authors'
    resize-and-crop ("resize_crop"). `batch_size` is per rank."""
    video_aug = TrainClipTransform(
        spec.input_size,
        spec.randaug,
        scale=tuple(spec.crop_scale),
        erasing=spec.random_erasing,
        randaug_order=spec.randaug_order,
    )
    if spec.sfer_augment == "resize_crop":
        image_aug = ResizeCropImageTransform(
            spec.input_size,
            round(spec.sfer_resize * spec.input_size),
            spec.sfer_randaug,
            erasing=spec.random_erasing,
        )
    elif spec.sfer_augment == "video":
        image_aug = video_aug
    else:
        raise ValueError(f"sfer_augment {spec.sfer_augment!r}: expected video or resize_crop")
    rows = finetune_rows(spec)
    if rows["dfer"] is None and rows["sfer"] is None:
        raise ValueError("build_finetune_loader needs a DFER dataset, an SFER dataset or both")
    augment = {"dfer": video_aug, "sfer": image_aug}
    sources = {
        task: ClipDataset(spec.store, table, "train", transform=augment[task], **_clip_shape(spec))
        for task, table in rows.items()
        if table is not None
    }
    return _train_set(spec, sources, finetune_sampler(spec, rows), collate_clips, fetch_ahead)


def build_pretrain_loader(spec: PretrainLoaderSpec, fetch_ahead: Callable) -> TrainSet:
    """Dual-modal MAE batches of `spec`: images (`modality` "image", x `[B, C, 2, S, S]`) and
    videos ("video", `[B, C, num_frames, S, S]`) interleaved. A video dataset given as
    `image_dataset` (video+video ablation) contributes one random frame per clip as an image.
    Labels are -1 for unlabeled data. `image_proportion`: fraction of the image set per epoch.
    `augment`: "multiscale" (VideoMAE's crop) or "resized" (the authors' random resized crops).
    Repeated sampling: each video is decoded once and gives `repeated_views` rows of its batch
    (`batch_size` counts views); `video_repeat` of the videos are drawn afresh each epoch.
    `crop_on_device` (with "resized" and repeated views): video batches carry each decoded clip
    once, `x` `[B / views, T, H, W, 3]`, plus `boxes`/`flip` of its views; the engine cuts them."""
    image_aug = video_aug = None
    if spec.augment == "resized":
        image_aug = ResizedCropPretrainTransform(spec.input_size, spec.image_crop_scale, hflip=0.5)
        video_aug = ResizedCropPretrainTransform(
            spec.input_size,
            spec.video_crop_scale,
            short_side=round(spec.video_short_side * spec.input_size),
        )
    elif spec.augment != "multiscale":
        raise ValueError(f"augment {spec.augment!r}: expected multiscale or resized")
    rows = pretrain_rows(spec)
    if rows["image"] is None and rows["video"] is None:
        raise ValueError("build_pretrain_loader needs an image dataset, a video dataset or both")
    sources: dict[str, ClipDataset] = {}
    if rows["image"] is not None:
        sources["image"] = ClipDataset(
            spec.store, rows["image"], "pretrain_image", transform=image_aug, **_clip_shape(spec)
        )
    if rows["video"] is not None:
        on_device = spec.crop_on_device and spec.augment == "resized" and spec.repeated_views > 1
        sources["video"] = ClipDataset(
            spec.store,
            rows["video"],
            "pretrain",
            transform=video_aug,
            views=spec.repeated_views,
            crop_on_device=on_device,
            **_clip_shape(spec),
        )
    return _train_set(spec, sources, pretrain_sampler(spec, rows), collate_pretrain, fetch_ahead)


def _clip_shape(spec: TrainLoaderSpec) -> dict[str, int]:
    return {
        "num_frames": spec.num_frames,
        "input_size": spec.input_size,
        "frame_stride": spec.frame_stride,
    }


def _train_set(spec: TrainLoaderSpec, sources, sampler, collate_fn, fetch_ahead) -> TrainSet:
    """The batches drawn by `sampler`, each from one of `sources`."""
    return TrainSet(
        SourceDataset(sources), sampler, collate_fn, spec.num_workers, spec.pin_memory, fetch_ahead
    )


def build_eval_loader(
    store: str | Path,
    dataset: str,
    *,
    fold: int | None,
    split: str,
    task: str,
    num_frames: int,
    input_size: int,
    batch_size: int,
    num_workers: int,
    n_clips: int,
    frame_stride: int,
    rank: int,
    world_size: int,
    holdout: Holdout | None,
    placement_seed: int | None,
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
        transform=EvalClipTransform(input_size),
        n_clips=1 if placement_seed is not None else n_clips,
        placement_seed=placement_seed,
    )
    indices = list(range(rank, len(ds), world_size))
    workers = max(0, int(num_workers))
    extra = {"persistent_workers": True, "worker_init_fn": _worker_init} if workers else {}
    if placement_seed is None:
        kind, batches = DataLoader, BatchSampler(indices, batch_size, drop_last=False)
        extra |= {"prefetch_factor": 4} if workers else {}
    else:
        kind, batches = EpochLoader, EpochBatches(indices, batch_size)
    return kind(
        ds,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        batch_sampler=batches,
        collate_fn=EvalCollate(task),
        **extra,
    )


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
