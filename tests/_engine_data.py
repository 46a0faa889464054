"""In-memory training data for the engine tests (resume, DDP, NaN guard): tiny learnable clips
and a joint batch sampler with the contract of `unilearn.data` (items addressed as (source,
index, sample_seed); batches from one source; a pure function of seed and epoch; sharded by
rank), so engine tests neither need a clip store nor depend on the data code.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from unilearn.data.loaders import TrainSet
from unilearn.engine.loader import fetch_ahead


class ToyClips(Dataset):
    """Class k = a bright square at a class-specific place, plus per-sample noise (the
    'augmentation', a pure function of the sample seed)."""

    def __init__(self, n: int, num_classes: int, frames: int, size: int, seed: int = 0):
        self.labels = np.arange(n) % num_classes
        self.frames, self.size, self.k, self.seed = frames, size, num_classes, seed

    def __len__(self) -> int:
        return len(self.labels)

    def clip(self, index: int, sample_seed: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, index, sample_seed])
        x = rng.integers(0, 96, (3, self.frames, self.size, self.size), dtype=np.uint8)
        k, s = int(self.labels[index]), self.size // 4
        top, left = (k % 4) * s // 2, (k // 4) * s
        x[:, :, top : top + s, left : left + s] = 230
        return torch.from_numpy(x)

    def __getitem__(self, item):
        index, sample_seed = item
        return self.clip(index, sample_seed), int(self.labels[index]), index


class ToyJoint(Dataset):
    """Items `(task, index, sample_seed)` routed to the dataset of that task."""

    def __init__(self, sources: dict[str, ToyClips]):
        self.sources = sources

    def __getitem__(self, item):
        task, index, sample_seed = item
        x, y, row = self.sources[task][(index, sample_seed)]
        return task, x, y, row


def collate(items, key: str = "task"):
    tasks = {t for t, *_ in items}
    assert len(tasks) == 1, "a batch mixes sources"
    return {
        key: tasks.pop(),
        "x": torch.stack([x for _, x, _, _ in items]),
        "y": torch.tensor([y for _, _, y, _ in items], dtype=torch.int64),
        "row": torch.tensor([r for _, _, _, r in items], dtype=torch.int64),
    }


class ToyJointSampler:
    """Global batches of one source each (SFER share by `sfer_proportion`), shuffled per epoch;
    rank r takes items r::world_size of every global batch."""

    def __init__(self, sizes: dict[str, int], batch_size: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1, sfer_proportion: float = 0.5):  # fmt: skip
        self.sizes, self.batch, self.seed = sizes, batch_size, seed
        self.rank, self.world = rank, world_size
        self.sfer_proportion = sfer_proportion
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _global_batches(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        batches = []
        for task, n in sorted(self.sizes.items()):
            take = int(n * self.sfer_proportion) if task == "sfer" else n
            order = rng.permutation(n)[:take]
            for i in range(0, take - self.batch + 1, self.batch):
                batches.append(
                    [(task, int(j), int(rng.integers(2**31))) for j in order[i : i + self.batch]]
                )
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self):
        for batch in self._global_batches():
            yield batch[self.rank :: self.world]

    def __len__(self) -> int:
        return len(self._global_batches())


def toy_finetune_data(cfg, resolved, fold, store, info, holdout=None, num_workers: int = 0,
                      n: int = 48):  # fmt: skip
    """Drop-in for `unilearn.engine.finetune.finetune_data` (a `holdout` is the toy validation
    loader's own clips: the toy training clips stay as they are)."""
    m = cfg.model
    sources = {}
    for task in resolved.tasks:
        frames = m.num_frames if task == "dfer" else m.tubelet_size
        sources[task] = ToyClips(
            n, len(resolved.labels[task]), frames, m.input_size, seed=len(task)
        )
    sampler = ToyJointSampler({t: len(d) for t, d in sources.items()}, cfg.finetune.batch_size * info.world_size,
                              seed=cfg.seed, rank=info.rank, world_size=info.world_size,
                              sfer_proportion=cfg.finetune.sfer_proportion)  # fmt: skip
    return TrainSet(ToyJoint(sources), sampler, collate, num_workers, False, fetch_ahead())


def collate_pretrain(items):
    """Pre-training batches name their source `modality`."""
    return collate(items, key="modality")


def toy_pretrain_data(cfg, mode, store, info, num_workers: int = 0, n: int = 32):
    """Drop-in for `unilearn.engine.pretrain.pretrain_data` (image and video batches)."""
    m = cfg.model
    sources = {"image": ToyClips(n, 4, m.tubelet_size, m.input_size, seed=1),
               "video": ToyClips(n, 4, m.num_frames, m.input_size, seed=2)}  # fmt: skip
    sampler = ToyJointSampler({t: len(d) for t, d in sources.items()}, cfg.pretrain.batch_size * info.world_size,
                              seed=cfg.seed, rank=info.rank, world_size=info.world_size,
                              sfer_proportion=1.0)  # fmt: skip
    return TrainSet(ToyJoint(sources), sampler, collate_pretrain, num_workers, False, fetch_ahead())


class ToyTestLoader:
    """Drop-in for `unilearn.engine.scoring.test_loader` over ToyClips: `n_clips` clips per
    video, rank r of W gets rows r::W, `dataset.table` the rows as a store table would have them."""

    def __init__(self, clips: ToyClips, task: str, n_clips: int, batch_size: int, rank: int,
                 world_size: int):  # fmt: skip
        import pandas as pd

        self.clips, self.task, self.n_clips, self.batch = clips, task, n_clips, batch_size
        self.rows = list(range(rank, len(clips), world_size))
        self.dataset = type("Table", (), {})()
        self.dataset.table = pd.DataFrame({
            "clip_id": [f"{i:05d}" for i in range(len(clips))],
            "label": clips.labels.astype(np.int64),
            "split": "test",
            "store_key": [f"toy/shard-00000.ulc:{i}" for i in range(len(clips))],
        })  # fmt: skip

    epoch = None  # set: one clip per video whose noise depends on the epoch (`set_epoch`)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        for i in range(0, len(self.rows), self.batch):
            rows = self.rows[i : i + self.batch]
            seeds = (
                [[10_000 + c] for c in range(self.n_clips)]
                if self.epoch is None
                else [[20_000 + self.epoch]]
            )
            x = torch.stack([torch.stack([self.clips.clip(r, s[0]) for s in seeds])
                             for r in rows])  # fmt: skip
            yield {"x": x, "y": torch.tensor([int(self.clips.labels[r]) for r in rows]),
                   "task": self.task, "row": torch.tensor(rows)}  # fmt: skip


def toy_test_loader(cfg, store, dataset, fold, meta, info, holdout=None, placement_seed=None,
                    n: int = 24):  # fmt: skip
    """Drop-in for `unilearn.engine.best_epoch.test_loader` (the toy data's own classes): with
    `holdout`, other clips (a validation split); with `placement_seed`, one clip per video that
    changes with `set_epoch`."""
    task = "sfer" if dataset == "affectnet7" else "dfer"
    frames = meta["num_frames"] if task == "dfer" else cfg.model.tubelet_size
    clips = ToyClips(n, len(meta["labels"][task]), frames, meta["input_size"],
                     seed=len(task) + (100 if holdout is not None else 0))  # fmt: skip
    loader = ToyTestLoader(clips, task, 1 if task == "sfer" else cfg.evaluate.n_clips,
                           cfg.evaluate.batch_size, info.rank, info.world_size)  # fmt: skip
    if placement_seed is not None:
        loader.n_clips, loader.epoch = 1, 0
    return loader
