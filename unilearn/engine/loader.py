"""How the engines iterate training data so that a run resumes exactly: a fresh DataLoader per
epoch over the epoch's batches (from a batch sampler that is a pure function of seed and epoch),
starting after the batches already trained on, with its own torch generator (a DataLoader
otherwise draws its worker seed from the global RNG, which would shift every random number of a
resumed run).

Resuming skips batches by index (the sampler's index lists), never by loading their clips.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset


class SkipBatches:
    """The batches of `batch_sampler` after the first `skip` (index lists only)."""

    def __init__(self, batch_sampler, skip: int = 0) -> None:
        self.batch_sampler = batch_sampler
        self.skip = skip

    def __iter__(self) -> Iterator[Any]:
        return itertools.islice(iter(self.batch_sampler), self.skip, None)

    def __len__(self) -> int:
        return max(len(self.batch_sampler) - self.skip, 0)


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

    @classmethod
    def from_loader(cls, loader, pin_memory: bool, mixups: dict | None = None) -> TrainData:
        """Take dataset, batch sampler, collation and workers from a `unilearn.data` loader."""
        dl = loader.loader
        return cls(dl.dataset, loader.batch_sampler, dl.collate_fn, dl.num_workers, pin_memory,
                   mixups or {}, dl.worker_init_fn)  # fmt: skip

    def steps_per_epoch(self) -> int:
        return len(self.batch_sampler)

    def epoch(self, epoch: int, skip: int = 0, seed: int = 0) -> DataLoader:
        """The DataLoader over epoch `epoch`'s batches after the first `skip`."""
        self.batch_sampler.set_epoch(epoch)
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        return DataLoader(
            self.dataset,
            batch_sampler=SkipBatches(self.batch_sampler, skip),
            collate_fn=self.collate_fn,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            generator=generator,
            worker_init_fn=self.worker_init_fn,
            prefetch_factor=4 if self.num_workers else None,
        )
