"""How the engines iterate training data so that a run resumes exactly and the loader stays warm:
ONE DataLoader for the whole run (its workers start once, not once per epoch, and prefetch across
epoch boundaries) over the batches from the resume step to the last step. Epoch e's batches come
from a batch sampler that is a pure function of (seed, e), and every item carries its own sample
seed, so which worker loads a batch, or when, never changes its content. The DataLoader gets its
own torch generator (it otherwise draws its worker seed from the global RNG, which would shift
every random number of a resumed run).

Resuming skips batches by index (the sampler's index lists), never by loading their clips: the
step count in `last.pt` is the whole resume position. The data side hands over the parts
(`unilearn.data.loaders.TrainSet`: dataset, batch sampler, collation), never a DataLoader.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from unilearn.engine.prefetch import Prefetcher


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
class TrainData:
    """A training set as the engine loads it: the set's parts (`unilearn.data.loaders.TrainSet`:
    dataset, batch sampler, collation, workers), pinned memory or not, and how many batches a
    background thread fetches ahead (0: none; `unilearn.engine.prefetch`)."""

    train: Any  # a TrainSet, or anything with its fields
    pin_memory: bool = False
    prefetch: int = 2

    def steps_per_epoch(self) -> int:
        return len(self.train.batch_sampler)

    def run(self, start: int, end: int, seed: int = 0) -> DataLoader:
        """The DataLoader over the batches of global steps [start, end)."""
        t = self.train
        return DataLoader(
            t.dataset,
            batch_sampler=RunBatches(t.batch_sampler, start, end),
            collate_fn=t.collate_fn,
            num_workers=t.num_workers,
            pin_memory=self.pin_memory,
            generator=torch.Generator().manual_seed(seed * 100_003 + start),
            worker_init_fn=t.worker_init_fn,
            prefetch_factor=4 if t.num_workers else None,
        )

    def batches(self, start: int, end: int, seed: int = 0) -> Prefetcher:
        """The run's batches from step `start` to `end`, fetched ahead by a thread (`close()`
        it: that stops the thread and the loader's workers)."""
        return Prefetcher(self.run(start, end, seed=seed), depth=self.prefetch)


def rest_of_epoch(batches: Iterator[dict], step: int, end_step: int, steps_per_epoch: int):
    """The run's next batches up to the end of the epoch that step `step` is in (or `end_step`)."""
    return itertools.islice(batches, min(steps_per_epoch - step % steps_per_epoch, end_step - step))


def check_epoch_ended(step: int, end_step: int, steps_per_epoch: int) -> None:
    """After an epoch's batches: the run is at an epoch end or at its last step, else the data
    ran out early (a sampler whose `len` promised more batches than it gave)."""
    if step % steps_per_epoch and step != end_step:
        raise RuntimeError(
            f"the training data ran out at step {step} of {end_step} "
            f"({steps_per_epoch} batches per epoch expected)"
        )


def finetune_data(cfg, resolved, fold: int | None, store: Path, info, holdout=None) -> TrainData:
    """The joint training set of a run: DFER train split of `resolved.dfer_dataset` (fold) and
    `sfer_proportion` of the SFER train split, batches from one source at a time; the training
    rows of `holdout` (a validation split) left out."""
    from unilearn.data.loaders import build_finetune_loader

    ft, m = cfg.finetune, cfg.model
    train = build_finetune_loader(
        store, resolved.dfer_dataset, resolved.sfer_dataset, fold=fold,
        num_frames=m.num_frames, input_size=m.input_size, batch_size=ft.batch_size,
        num_workers=cfg.data.num_workers, seed=cfg.seed, rank=info.rank,
        world_size=info.world_size, sfer_proportion=ft.sfer_proportion, randaug=ft.randaug,
        randaug_order=ft.randaug_order,
        frame_stride=ft.frame_stride, crop_scale=tuple(ft.crop_scale),
        random_erasing=ft.random_erasing, sfer_sampling=ft.sfer_sampling,
        sfer_batch_factor=ft.sfer_batch_factor, sfer_augment=ft.sfer_augment,
        sfer_resize=ft.sfer_resize, sfer_randaug=ft.sfer_randaug, holdout=holdout,
    )  # fmt: skip
    return TrainData(train, pin_memory=cfg.data.pin_memory and info.device.type == "cuda")


def pretrain_data(cfg, mode: str, store: Path, info) -> TrainData:
    """The pre-training set of a mode: image batches (AffectNet, or VoxCeleb2 frames for
    video+video) and/or video batches (VoxCeleb2), one modality per batch."""
    from unilearn.catalogue import pretrain_sources
    from unilearn.data.loaders import build_pretrain_loader

    pt, m = cfg.pretrain, cfg.model
    image, video = pretrain_sources(mode, pt.image_dataset, pt.video_dataset)
    train = build_pretrain_loader(
        store, image, video, num_frames=m.num_frames, input_size=m.input_size,
        batch_size=pt.batch_size, num_workers=cfg.data.num_workers, seed=cfg.seed,
        rank=info.rank, world_size=info.world_size, frame_stride=pt.frame_stride,
        image_proportion=pt.image_proportion, augment=pt.augment,
        image_crop_scale=tuple(pt.image_crop_scale), video_short_side=pt.video_short_side,
        video_crop_scale=tuple(pt.video_crop_scale), repeated_views=pt.repeated_views,
        video_repeat=pt.video_repeat, crop_on_device=pt.crop_on_device,
    )  # fmt: skip
    return TrainData(train, pin_memory=cfg.data.pin_memory and info.device.type == "cuda")
