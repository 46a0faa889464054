"""Batch samplers that draw every batch from ONE source (SFER or DFER for joint fine-tuning, image
or video for dual-modal pre-training), deterministic given (seed, epoch, rank, world_size),
sharded per rank. A run resumes mid-epoch by its step position: epoch e's index lists are a pure
function of (seed, e), so the engine skips the ones already trained (`unilearn.data.loaders.RunBatches`).

An epoch: each source takes its subset (a `fraction` of it; the SFER proportion), shuffles it with
(seed, epoch), pads it by wrapping to a multiple of the global batch (batch_size x world_size, so
every rank gets the same number of full batches, as DistributedSampler pads) and cuts it into
global batches; the global batches of all sources are interleaved in a random order drawn from
(seed, epoch). At step j every rank gets its slice of the same global batch, so all ranks train
the same task at the same step (DDP never sees an unused head). Each item is
`(source, index, sample_seed)`; the sample seed makes its augmentation a pure function of
(seed, epoch, position), independent of DataLoader workers.

The SFER subset (fraction < 1) is drawn once per run from the seed (a fixed part of AffectNet, as
"the proportion of the SFER dataset used"); `resample_each_epoch=True` (or a set of source names)
redraws it every epoch. A source with `weights` is instead drawn WITH replacement, each sample with
probability proportional to its weight, afresh every epoch: the authors' class-balanced
oversampler (`ImbalancedDatasetSampler`: weight 1 / class count, `torch.multinomial` with
replacement, a new draw each epoch, of which the joint loader uses the first `sfer_data_rate`).
Sources may have their own per-rank batch size (the authors' image batches are twice the video
batch).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator

import numpy as np

_SUBSET, _ORDER, _INTERLEAVE, _SEEDS = 1, 2, 3, 4  # independent random streams per purpose


class SourceBatchSampler:
    """One-source-per-batch sampler over `sizes = {source: dataset length}`.

    `fractions[source]` (default 1) is the part of that source used; `len(sampler)` is the number
    of batches per rank per epoch. `set_epoch(e)` as DistributedSampler.
    """

    def __init__(
        self,
        sizes: dict[str, int],
        batch_size: int,
        fractions: dict[str, float] | None,
        seed: int,
        rank: int,
        world_size: int,
        resample_each_epoch: bool | Collection[str] = False,
        batch_sizes: dict[str, int] | None = None,
        weights: dict[str, np.ndarray] | None = None,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        fractions = fractions or {}
        self.sizes = {name: int(n) for name, n in sizes.items() if n > 0}
        self.fractions = {name: float(fractions.get(name, 1.0)) for name in self.sizes}
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.batch_sizes = {
            name: int((batch_sizes or {}).get(name, batch_size)) for name in self.sizes
        }
        if min(self.batch_sizes.values(), default=1) < 1:
            raise ValueError(f"per-source batch sizes must be >= 1, got {batch_sizes}")
        self.resampled = (
            set(self.sizes) if resample_each_epoch is True else set(resample_each_epoch or ())
        )
        self.weights: dict[str, np.ndarray] = {}
        for name, w in (weights or {}).items():
            if name not in self.sizes:
                continue
            w = np.asarray(w, dtype=np.float64)
            if w.shape != (self.sizes[name],) or (w < 0).any() or w.sum() <= 0:
                raise ValueError(
                    f"weights of source {name!r}: expected {self.sizes[name]} non-negative "
                    f"weights with a positive sum, got shape {w.shape}"
                )
            self.weights[name] = w / w.sum()
        self.epoch = 0
        if not any(self.used(name) for name in self.sizes):
            raise ValueError(f"no samples to draw from sources {sizes} with fractions {fractions}")

    def used(self, source: str) -> int:
        """Samples of `source` used per epoch (the subset size)."""
        return round(self.fractions[source] * self.sizes[source])

    def _global_batches(self, source: str) -> int:
        return math.ceil(self.used(source) / (self.batch_sizes[source] * self.world_size))

    def __len__(self) -> int:
        return sum(self._global_batches(name) for name in self.sizes)

    def subset(self, source: str, epoch: int | None = None) -> np.ndarray:
        """Indices of `source` used in `epoch` (sorted; with repeats for a weighted source)."""
        n, k = self.sizes[source], self.used(source)
        epoch = self.epoch if epoch is None else epoch
        if source in self.weights:  # a fresh draw with replacement every epoch
            rng = np.random.default_rng([self.seed, _SUBSET, self._source_id(source), epoch])
            return np.sort(rng.choice(n, size=k, replace=True, p=self.weights[source]))
        if k == n:
            return np.arange(n)
        key = [self.seed, _SUBSET, self._source_id(source)] + (
            [epoch] if source in self.resampled else []
        )
        return np.sort(np.random.default_rng(key).permutation(n)[:k])

    def _source_id(self, source: str) -> int:
        return sorted(self.sizes).index(source)

    def _plan(self, epoch: int) -> tuple[list[tuple[str, np.ndarray]], np.ndarray]:
        """This epoch's global batches `[(source, indices [world_size, batch_size])]` in order,
        and sample seeds `[n_batches, world_size, batch_size]`."""
        batches = []
        for source in sorted(self.sizes):
            batch_size = self.batch_sizes[source]
            global_batch = batch_size * self.world_size
            order = np.random.default_rng(
                [self.seed, _ORDER, epoch, self._source_id(source)]
            ).permutation(self.subset(source, epoch))
            if len(order) == 0:
                continue
            n_batches = self._global_batches(source)
            padded = np.resize(
                order, n_batches * global_batch
            )  # wraps around, as DistributedSampler pads
            batches += [
                (source, b.reshape(self.world_size, batch_size))
                for b in padded.reshape(n_batches, global_batch)
            ]
        perm = np.random.default_rng([self.seed, _INTERLEAVE, epoch]).permutation(len(batches))
        widest = max(self.batch_sizes.values())
        seeds = np.random.default_rng([self.seed, _SEEDS, epoch]).integers(
            0, 2**63 - 1, size=(len(batches), self.world_size, widest)
        )
        return [batches[i] for i in perm], seeds

    def __iter__(self) -> Iterator[list[tuple[str, int, int]]]:
        batches, seeds = self._plan(self.epoch)
        for step, (source, indices) in enumerate(batches):
            yield [
                (source, int(i), int(s)) for i, s in zip(indices[self.rank], seeds[step, self.rank])
            ]

    def set_epoch(self, epoch: int) -> None:
        """Iterate `epoch`'s batches from now on."""
        self.epoch = epoch


class JointBatchSampler(SourceBatchSampler):
    """Joint fine-tuning: batches of `"dfer"` or `"sfer"`; `sfer_proportion` of the SFER set used
    (the fraction of `unilearn.catalogue.sfer_fraction`), the whole DFER set every epoch. `sfer_labels` (the SFER set's class
    ids) switch on the authors' class-balanced fresh draw; SFER batches hold
    `sfer_batch_factor` x `batch_size` images."""

    def __init__(
        self,
        dfer_size: int,
        sfer_size: int,
        batch_size: int,
        sfer_proportion: float,
        *,
        seed: int,
        rank: int,
        world_size: int,
        sfer_batch_factor: int,
        sfer_labels: Collection[int] | None = None,
        resample_sfer_each_epoch: bool = False,
    ) -> None:
        weights = None
        if sfer_labels is not None and sfer_size:
            weights = {"sfer": class_balanced_weights(sfer_labels)}
        super().__init__(
            {"dfer": dfer_size, "sfer": sfer_size},
            batch_size,
            {"sfer": sfer_proportion},
            seed,
            rank,
            world_size,
            resample_sfer_each_epoch,
            batch_sizes={"sfer": batch_size * sfer_batch_factor},
            weights=weights,
        )


def class_balanced_weights(labels: Collection[int]) -> np.ndarray:
    """Weight 1 / (count of the sample's class) per sample: every class is drawn equally often
    (the authors' `ImbalancedDatasetSampler`)."""
    labels = np.asarray(list(labels))
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse]


class PretrainBatchSampler(SourceBatchSampler):
    """Dual-modal pre-training: batches of `"image"` or `"video"` clips, interleaved."""

    def __init__(
        self,
        image_size: int,
        video_size: int,
        batch_size: int,
        image_proportion: float,
        *,
        seed: int,
        rank: int,
        world_size: int,
        repeated_views: int,
        video_repeat: float,
    ) -> None:
        """`batch_size` counts views: a video batch holds batch_size / repeated_views clips, each
        decoded once and cut into `repeated_views` views; `video_repeat` of the videos are drawn
        afresh each epoch (the authors': 1/4)."""
        if batch_size % repeated_views:
            raise ValueError(
                f"batch_size={batch_size} is not a multiple of repeated_views={repeated_views}"
            )
        super().__init__(
            {"image": image_size, "video": video_size},
            batch_size,
            {"image": image_proportion, "video": video_repeat},
            seed,
            rank,
            world_size,
            resample_each_epoch={"video"} if video_repeat < 1 else (),
            batch_sizes={"video": batch_size // repeated_views},
        )
        self.repeated_views = repeated_views
