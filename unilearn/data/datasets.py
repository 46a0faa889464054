"""Datasets over the clip store, the batch collation and the loader builders the engine calls.

- `ClipDataset`: one store table (dataset, fold, split) as training clips (items `(index,
  sample_seed)`, augmentation a pure function of the seed), pre-training clips, or test clips
  (int items, `n_clips` uniformly spaced clips per video). Images are 2-frame clips.
- `SourceDataset`: several ClipDatasets addressed as `(source, index, sample_seed)`, for the
  one-source-per-batch samplers (`unilearn.data.samplers`).
- `build_finetune_loader`, `build_eval_loader`, `build_pretrain_loader`: what the engine uses.

Batches are `{"x": uint8 [B, C, T, H, W], "y": int64 [B], "task": "sfer"|"dfer", "row": int64
[B]}` (pre-training: `"modality": "image"|"video"` instead of `"task"`; evaluation: `x` is
`[B, n_clips, C, T, H, W]`). `row` indexes `loader.dataset.tables[source]` (the store rows).

Unreadable clips at load time: preprocessing quarantines bad media, so this is rare (a damaged
shard). In training the dataset logs the clip and substitutes the next readable clip of the same
dataset (deterministic: index + 1, + 2, ...), counting substitutions in
`ClipDataset.substitutions`; after 16 unreadable clips in a row it raises, since the store itself
is then broken. A test clip is never substituted (its prediction would count for another clip):
an eval batch leaves it out and names it in `batch["unreadable"]` (rows and reasons).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from unilearn.data.labels import get_label_set
from unilearn.data.store import ClipStore
from unilearn.data.transforms import (
    EvalClipTransform,
    PretrainClipTransform,
    TrainClipTransform,
    eval_indices,
    finetune_indices,
    pretrain_indices,
)

log = logging.getLogger(__name__)

MAX_SUBSTITUTIONS = 16
IMAGE_FRAMES = 2  # an image is one tubelet: the frame repeated twice


def load_store_table(
    store: str | Path, dataset: str, fold: int | None = None, split: str | None = None
) -> pd.DataFrame:
    """Rows of `STORE/DATASET.parquet` for one fold and split, re-indexed 0..n-1.

    `affectnet7` reads `affectnet7.parquet` if preprocessing wrote one, else the 8-class AffectNet
    table without its contempt rows (AffectNet-7's definition; ids 0-6 are shared).
    `fold` is required for datasets with folds (DFEW, MAFW) and must be None for the others.
    """
    store = Path(store)
    path = store / f"{dataset}.parquet"
    if dataset == "affectnet7" and not path.exists():
        path = store / "affectnet.parquet"
        table = _read(path)
        table = table[table["label"] != get_label_set("affectnet").classes.index("contempt")]
    else:
        table = _read(path)
    has_folds = "fold" in table.columns and table["fold"].notna().any()
    if has_folds:
        if fold is None:
            raise ValueError(
                f"{path}: {dataset} has folds {sorted(table['fold'].dropna().unique().tolist())}; pass fold"
            )
        table = table[table["fold"] == fold]
    elif fold is not None:
        raise ValueError(f"{path}: {dataset} has one official split; fold must be None, got {fold}")
    if split is not None:
        table = table[table["split"] == split]
    if table.empty:
        raise ValueError(f"{path}: no rows for dataset={dataset} fold={fold} split={split}")
    return table.reset_index(drop=True)


def _read(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: store table missing; run `unilearn preprocess` for this dataset"
        )
    return pd.read_parquet(path)


class ClipDataset(Dataset):
    """Clips of one store table.

    `mode`: `train` (fine-tuning augmentation, MAE-DFER temporal sampling; items `(index, seed)`),
    `pretrain` (multi-scale crop, `num_frames` at `frame_stride` from a random start; items
    `(index, seed)`), `pretrain_image` (one random frame of each clip as an image, for the image
    modality; `(index, seed)`) or `eval` (int items, `n_clips` clips resized + centre-cropped).
    Returns `(clip uint8 [C, T, S, S] (eval: [n_clips, C, T, S, S]), label, row)`.
    """

    def __init__(
        self,
        store: str | Path | ClipStore,
        table: pd.DataFrame,
        mode: str,
        num_frames: int = 16,
        input_size: int = 160,
        frame_stride: int = 4,
        randaug: str | None = "rand-m7-n4-mstd0.5-inc1",
        n_clips: int = 2,
    ) -> None:
        if mode not in ("train", "pretrain", "pretrain_image", "eval"):
            raise ValueError(
                f"ClipDataset mode {mode!r}: expected train, pretrain, pretrain_image or eval"
            )
        missing = {"store_key", "n_frames", "label"} - set(table.columns)
        if missing:
            raise ValueError(
                f"store table lacks columns {sorted(missing)}; was it written by `unilearn preprocess`?"
            )
        self.store = store if isinstance(store, ClipStore) else ClipStore(store)
        self.table = table.reset_index(drop=True)
        self.mode = mode
        self.num_frames, self.input_size, self.frame_stride, self.n_clips = (
            num_frames,
            input_size,
            frame_stride,
            n_clips,
        )
        self._keys = self.table["store_key"].astype(str).tolist()
        self._n = self.table["n_frames"].astype(int).tolist()
        self._labels = self.table["label"].astype(int).tolist()
        if mode == "train":
            self.transform = TrainClipTransform(input_size, randaug)
        elif mode in ("pretrain", "pretrain_image"):
            self.transform = PretrainClipTransform(input_size)
        else:
            self.transform = EvalClipTransform(input_size)
        self.substitutions = 0

    def __len__(self) -> int:
        return len(self._keys)

    def __getitem__(self, item):
        index, seed = (item, None) if isinstance(item, int | np.integer) else item
        if self.mode == "eval":
            try:
                return self._load(int(index), None), self._labels[index], int(index)
            except Exception as exc:  # noqa: BLE001 - reported per clip, never substituted
                return (
                    UnreadableClip(f"{type(exc).__name__}: {exc}"),
                    self._labels[index],
                    int(index),
                )
        for attempt in range(MAX_SUBSTITUTIONS):
            i = (int(index) + attempt) % len(self)
            try:
                clip = self._load(i, seed)
            except Exception as exc:  # noqa: BLE001 - see the module docstring: log, substitute, count
                self.substitutions += 1
                log.warning(
                    "unreadable clip %s (row %d): %s; substituting the next clip (%d so far)",
                    self._keys[i],
                    i,
                    exc,
                    self.substitutions,
                )
                continue
            return clip, self._labels[i], i
        raise RuntimeError(
            f"{MAX_SUBSTITUTIONS} unreadable clips in a row from row {index} of the store table: is the store damaged?"
        )

    def _load(self, i: int, seed: int | None) -> torch.Tensor:
        n, key = self._n[i], self._keys[i]
        if self.mode == "eval":
            if n == 1:  # an image: one clip, the frame repeated
                return self.transform(self.store.read_numpy(key, [0] * IMAGE_FRAMES))[None]
            clips = eval_indices(n, self.num_frames, self.frame_stride, self.n_clips)
            frames = self.store.read_numpy(key, sorted({j for c in clips for j in c}))
            where = {j: k for k, j in enumerate(sorted({j for c in clips for j in c}))}
            return torch.stack([self.transform(frames[[where[j] for j in c]]) for c in clips])
        if seed is None:
            raise TypeError(f"{self.mode} items are (index, sample_seed) pairs, got {i}")
        rng = random.Random(seed)
        if n == 1 or self.mode == "pretrain_image":
            frame = rng.randrange(n)
            # augment the one frame, then repeat it: both copies get the same augmentation
            return self.transform(self.store.read_numpy(key, [frame]), rng).repeat(
                1, IMAGE_FRAMES, 1, 1
            )
        sample = finetune_indices if self.mode == "train" else pretrain_indices
        return self.transform(
            self.store.read_numpy(key, sample(n, self.num_frames, self.frame_stride, rng)), rng
        )


@dataclass(frozen=True)
class UnreadableClip:
    """Stands in for a test clip whose store record could not be read (see the module doc)."""

    reason: str


class SourceDataset(Dataset):
    """Several ClipDatasets by source name; items `(source, index, sample_seed)`."""

    def __init__(self, sources: dict[str, ClipDataset]) -> None:
        self.sources = sources

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        return {name: ds.table for name, ds in self.sources.items()}

    def __len__(self) -> int:
        return sum(len(ds) for ds in self.sources.values())

    def __getitem__(self, item):
        source, index, seed = item
        clip, label, row = self.sources[source][(index, seed)]
        return clip, label, row, source


def collate_clips(items: Sequence[tuple], key: str = "task") -> dict:
    """`[(clip, label, row, source), ...]` from one source -> the batch dict."""
    sources = {it[3] for it in items}
    if len(sources) != 1:
        raise ValueError(f"a batch must come from one source, got {sorted(sources)}")
    return {
        "x": torch.stack([it[0] for it in items]),
        "y": torch.tensor([it[1] for it in items], dtype=torch.int64),
        key: sources.pop(),
        "row": torch.tensor([it[2] for it in items], dtype=torch.int64),
    }


def _collate_pretrain(items):
    return collate_clips(items, key="modality")


class _EvalCollate:
    def __init__(self, task: str) -> None:
        self.task = task

    def __call__(self, items):
        readable = [(c, y, r, self.task) for c, y, r in items if not isinstance(c, UnreadableClip)]
        bad = [(r, c.reason) for c, _, r in items if isinstance(c, UnreadableClip)]
        if readable:
            batch = collate_clips(readable)
        else:
            empty = torch.zeros(0, dtype=torch.int64)
            batch = {"x": torch.zeros(0, dtype=torch.uint8), "y": empty, "task": self.task,
                     "row": empty}  # fmt: skip
        batch["unreadable"] = {"row": torch.tensor([r for r, _ in bad], dtype=torch.int64),
                               "reason": [why for _, why in bad]}  # fmt: skip
        return batch


def _worker_init(_: int) -> None:
    import cv2

    torch.set_num_threads(1)  # workers parallelise over clips
    cv2.setNumThreads(1)


class ClipLoader:
    """A DataLoader plus the resumable batch sampler behind it.

    `set_epoch(e)`, `len()`, iteration as a DataLoader, and `state_dict()`/`load_state_dict()`
    that count the batches the training loop has actually received (the DataLoader prefetches
    ahead of it), so a checkpoint resumes at exactly the next batch.
    """

    def __init__(self, loader: DataLoader, batch_sampler=None) -> None:
        self.loader = loader
        self.batch_sampler = batch_sampler
        self.dataset = loader.dataset
        self._consumed = 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        if self.batch_sampler is not None:
            self._consumed = self.batch_sampler.start_step
        for batch in self.loader:
            self._consumed += 1
            yield batch

    def set_epoch(self, epoch: int) -> None:
        if self.batch_sampler is not None:
            self.batch_sampler.set_epoch(epoch)
            self._consumed = self.batch_sampler.start_step

    def state_dict(self) -> dict:
        if self.batch_sampler is None:
            return {}
        return {**self.batch_sampler.state_dict(), "step": self._consumed}

    def load_state_dict(self, state: dict) -> None:
        if self.batch_sampler is not None:
            self.batch_sampler.load_state_dict(state)
            self._consumed = self.batch_sampler.start_step


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
    randaug: str | None = "rand-m7-n4-mstd0.5-inc1",
    frame_stride: int = 4,
    resample_sfer_each_epoch: bool = False,
) -> ClipLoader:
    """Joint (or single-task) fine-tuning loader: batches from ONE source each, `task` "dfer" or
    "sfer". `fold` selects the DFER dataset's fold (None for FERV39K). `sfer_proportion` is the
    fraction of the SFER training set used, applied only when both tasks train (a fixed subset per
    run unless `resample_sfer_each_epoch`). `batch_size` is per rank."""
    from unilearn.data.samplers import JointBatchSampler

    kw = {
        "num_frames": num_frames,
        "input_size": input_size,
        "frame_stride": frame_stride,
        "randaug": randaug,
    }
    sources: dict[str, ClipDataset] = {}
    if dfer_dataset:
        sources["dfer"] = _train_source(store, dfer_dataset, fold, "train", **kw)
    if sfer_dataset:
        sources["sfer"] = _train_source(store, sfer_dataset, None, "train", **kw)
    if not sources:
        raise ValueError("build_finetune_loader needs a DFER dataset, an SFER dataset or both")
    sampler = JointBatchSampler(
        dfer_size=len(sources.get("dfer", [])),
        sfer_size=len(sources.get("sfer", [])),
        batch_size=batch_size,
        sfer_proportion=sfer_proportion if len(sources) == 2 else 1.0,
        seed=seed,
        rank=rank,
        world_size=world_size,
        resample_sfer_each_epoch=resample_sfer_each_epoch,
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
) -> ClipLoader:
    """Dual-modal MAE loader: batches of images (`modality` "image", x `[B, C, 2, S, S]`) and of
    videos ("video", `[B, C, num_frames, S, S]`) interleaved. A video dataset given as
    `image_dataset` (video+video ablation) contributes one random frame per clip as an image.
    Labels are -1 for unlabeled data. `image_proportion`: fraction of the image set per epoch."""
    from unilearn.data.samplers import PretrainBatchSampler

    kw = {"num_frames": num_frames, "input_size": input_size, "frame_stride": frame_stride}
    sources: dict[str, ClipDataset] = {}
    if image_dataset:
        sources["image"] = _train_source(store, image_dataset, None, "pretrain_image", **kw)
    if video_dataset:
        sources["video"] = _train_source(store, video_dataset, None, "pretrain", **kw)
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
    )
    return _one_source_batches(sources, sampler, num_workers, _collate_pretrain)


def _train_source(
    store: str | Path, dataset: str, fold: int | None, mode: str, **kw
) -> ClipDataset:
    """The train rows of (dataset, fold) as one source of a one-source-per-batch loader."""
    return ClipDataset(store, load_store_table(store, dataset, fold, "train"), mode, **kw)


def _one_source_batches(
    sources: dict[str, ClipDataset], sampler, num_workers: int, collate_fn
) -> ClipLoader:
    """The loader of batches drawn by `sampler`, each from one of `sources`."""
    loader = _data_loader(
        SourceDataset(sources), num_workers, batch_sampler=sampler, collate_fn=collate_fn
    )
    return ClipLoader(loader, sampler)


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
) -> ClipLoader:
    """Test loader over every row of (dataset, fold, split), in order (rank r of W gets rows
    r, r+W, ...): `x` `[B, n_clips, C, T, S, S]` (images: n_clips = 1), `task` as given,
    `row` the position in `loader.dataset.table` (for writing predictions)."""
    table = load_store_table(store, dataset, fold, split)
    ds = ClipDataset(
        store,
        table,
        mode="eval",
        num_frames=num_frames,
        input_size=input_size,
        frame_stride=frame_stride,
        n_clips=n_clips,
    )
    indices = list(range(rank, len(ds), world_size))
    sampler = torch.utils.data.BatchSampler(indices, batch_size, drop_last=False)
    loader = _data_loader(ds, num_workers, batch_sampler=sampler, collate_fn=_EvalCollate(task))
    return ClipLoader(loader)
