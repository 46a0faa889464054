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
