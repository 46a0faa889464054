"""How the engines iterate training data so that a run resumes exactly and the loader stays warm:
ONE DataLoader for the whole run (its workers start once, not once per epoch, and prefetch across
epoch boundaries) over the batches from the resume step to the last step. Epoch e's batches come
from a batch sampler that is a pure function of (seed, e), and every item carries its own sample
seed, so which worker loads a batch, or when, never changes its content. The DataLoader gets its
own torch generator (it otherwise draws its worker seed from the global RNG, which would shift
every random number of a resumed run).

Resuming skips batches by index (the sampler's index lists), never by loading their clips.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset


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
    """A training set as the engines need it."""

    dataset: Dataset  # items addressed by what the batch sampler yields
    batch_sampler: Any  # set_epoch(epoch), __len__ (batches per epoch on this rank), __iter__
    collate_fn: Callable | None = None  # list of items -> batch dict {"x", "y", "task", "row"}
    num_workers: int = 0
    pin_memory: bool = False
    mixups: dict[str, Callable | None] = field(default_factory=dict)  # task -> mixup/cutmix
    worker_init_fn: Callable | None = None
    prefetch: int = 2  # batches a background thread fetches ahead (0: none; `engine.prefetch`)

    @classmethod
    def from_loader(cls, loader, pin_memory: bool, mixups: dict | None = None) -> TrainData:
        """Take dataset, batch sampler, collation and workers from a `unilearn.data` loader."""
        dl = loader.loader
        return cls(dl.dataset, loader.batch_sampler, dl.collate_fn, dl.num_workers, pin_memory,
                   mixups or {}, dl.worker_init_fn)  # fmt: skip

    def steps_per_epoch(self) -> int:
        return len(self.batch_sampler)

    def run(self, start: int, end: int, seed: int = 0) -> DataLoader:
        """The DataLoader over the batches of global steps [start, end)."""
        return DataLoader(
            self.dataset,
            batch_sampler=RunBatches(self.batch_sampler, start, end),
            collate_fn=self.collate_fn,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            generator=torch.Generator().manual_seed(seed * 100_003 + start),
            worker_init_fn=self.worker_init_fn,
            prefetch_factor=4 if self.num_workers else None,
        )
