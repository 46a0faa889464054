"""Datasets over the clip store, the batch collation and the loader builders the engine calls.

- `ClipDataset`: one store table (dataset, fold, split) as training clips (items `(index,
  sample_seed)`, augmentation a pure function of the seed), pre-training clips, or test clips
  (int items, `n_clips` uniformly spaced clips per video). Images are 2-frame clips.
- `SourceDataset`: several ClipDatasets addressed as `(source, index, sample_seed)`, for the
  one-source-per-batch samplers (`unilearn.data.samplers`).
- `build_finetune_loader`, `build_pretrain_loader` (a `TrainSet`: dataset, batch sampler and
  collation, no DataLoader) and `build_eval_loader` (a DataLoader): what the engine uses.

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
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from unilearn.catalogue import SFER_RANDAUGMENT, get_label_set
from unilearn.data.store import ClipStore, read_stride
from unilearn.data.transforms import (
    EvalClipTransform,
    PretrainClipTransform,
    ResizeCropImageTransform,
    ResizedCropPretrainTransform,
    TrainClipTransform,
    eval_indices,
    finetune_indices,
    pretrain_indices,
)
from unilearn.errors import InputError, read_parquet

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
        raise InputError(f"{path}: no rows for dataset={dataset} fold={fold} split={split}")
    return table.reset_index(drop=True)


def _read(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: store table missing; run `unilearn preprocess` for this dataset"
        )
    return read_parquet(path, "store table")


class ClipDataset(Dataset):
    """Clips of one store table.

    `mode`: `train` (fine-tuning augmentation, MAE-DFER temporal sampling; items `(index, seed)`),
    `pretrain` (multi-scale crop, `num_frames` at `frame_stride` from a random start; items
    `(index, seed)`), `pretrain_image` (one random frame of each clip as an image, for the image
    modality; `(index, seed)`) or `eval` (int items, `n_clips` clips resized + centre-cropped).
    Returns `(clip uint8 [C, T, S, S] (eval: [n_clips, C, T, S, S]), label, row)`; `pretrain`
    with `views > 1` (repeated sampling) decodes the frames once and returns `views` clips
    `[views, C, T, S, S]`, each augmented with its own draw. `transform` replaces the mode's
    default augmentation.
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
        transform=None,
        views: int = 1,
        crop_on_device: bool = False,
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
        if mode != "pretrain_image":  # in stored frames: a store may keep every k-th frame only
            self.frame_stride = read_stride(self.store.root, self._keys, frame_stride)
        self._n = self.table["n_frames"].astype(int).tolist()
        self._labels = self.table["label"].astype(int).tolist()
        self.views = views
        self.crop_on_device = crop_on_device
        if transform is not None:
            self.transform = transform
        elif mode == "train":
            self.transform = TrainClipTransform(input_size, randaug)
        elif mode in ("pretrain", "pretrain_image"):
            self.transform = PretrainClipTransform(input_size)
        else:
            self.transform = EvalClipTransform(input_size)
        self.substitutions = 0

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def labels(self) -> list[int]:
        """Class id of every row (for class-balanced sampling)."""
        return list(self._labels)

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

    def writes_into_batch(self) -> bool:
        """Whether items can be written straight into a preallocated batch (repeated views)."""
        return (
            self.mode == "pretrain"
            and self.views > 1
            and isinstance(self.transform, ResizedCropPretrainTransform)
        )

    def decoded_with_boxes(self, item) -> tuple[np.ndarray, list, int, int]:
        """For cropping on the device: the decoded frames `[T, H, W, 3]` of `item`, its views'
        (box, flip) as the batch path would draw them, label and row (no substitution: a store
        read that fails raises)."""
        index, seed = item
        i = int(index) % len(self)
        rng = random.Random(seed)
        n = self._n[i]
        frames = self.store.read_numpy(
            self._keys[i], pretrain_indices(n, self.num_frames, self.frame_stride, rng)
        )
        h, w = frames.shape[1:3]
        views = [
            self.transform.box(h, w, random.Random(rng.getrandbits(64))) for _ in range(self.views)
        ]
        return frames, views, self._labels[i], i

    def load_into(self, item, out: torch.Tensor):
        """`self[item]` with its views written into `out` `[views, C, T, S, S]`."""
        index, seed = item
        for attempt in range(MAX_SUBSTITUTIONS):
            i = (int(index) + attempt) % len(self)
            try:
                clip = self._load(i, seed, out)
                if clip is not out:  # a clip the batch path does not cover (one frame)
                    out.copy_(clip)
            except Exception as exc:  # noqa: BLE001 - as __getitem__
                self.substitutions += 1
                log.warning("unreadable clip %s (row %d): %s; substituting the next clip (%d so far)",
                            self._keys[i], i, exc, self.substitutions)  # fmt: skip
                continue
            return out, self._labels[i], i
        raise RuntimeError(
            f"{MAX_SUBSTITUTIONS} unreadable clips in a row from row {index} of the store table: is the store damaged?"
        )

    def _load(self, i: int, seed: int | None, out: torch.Tensor | None = None) -> torch.Tensor:
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
        frames = self.store.read_numpy(key, sample(n, self.num_frames, self.frame_stride, rng))
        if self.views > 1:  # repeated sampling: one decode, `views` augmentations
            return torch.stack(
                [
                    self.transform(frames, random.Random(rng.getrandbits(64)))
                    for _ in range(self.views)
                ]
            )
        return self.transform(frames, rng)


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

    def __getitems__(self, items: list) -> list | PreCollated:
        """A whole batch (the DataLoader calls this with the batch sampler's list). Repeated-view
        pre-training batches are written straight into one preallocated tensor (in shared memory
        inside a worker), which saves the collation copy: with 192 views of 16 x 160^2 that copy
        costs more than a view's augmentation (bench/loader.py)."""
        sources = {it[0] for it in items}
        ds = self.sources[next(iter(sources))] if len(sources) == 1 else None
        if ds is None or not ds.writes_into_batch():
            return [self[it] for it in items]
        if ds.crop_on_device:
            return _decoded_batch(ds, items)
        k, s = ds.views, ds.input_size
        shape = (len(items) * k, 3, ds.num_frames, s, s)
        x = _batch_tensor(shape)
        labels, rows = [], []
        for b, (_, index, seed) in enumerate(items):
            _, label, row = ds.load_into((index, seed), x[b * k : (b + 1) * k])
            labels += [label] * k
            rows += [row] * k
        return PreCollated(x, labels, rows, items[0][0])


class PreCollated(NamedTuple):
    """A batch already laid out by `SourceDataset.__getitems__` (collation only wraps it).
    With `boxes`, `x` holds each decoded clip once `[B, T, H, W, 3]` and the views are cut on
    the device (`unilearn.data.transforms.crop_views_on_device`)."""

    x: torch.Tensor
    labels: list[int]
    rows: list[int]
    source: str
    boxes: torch.Tensor | None = None
    flip: torch.Tensor | None = None
    views: int = 1


def _decoded_batch(ds: ClipDataset, items: list) -> PreCollated:
    """Decoded clips (padded to the batch's largest frame; boxes never reach the padding) and the
    crop boxes of their views."""
    decoded = [ds.decoded_with_boxes((index, seed)) for _, index, seed in items]
    t = ds.num_frames
    h = max(f.shape[1] for f, *_ in decoded)
    w = max(f.shape[2] for f, *_ in decoded)
    x = _batch_tensor((len(items), t, h, w, 3))
    boxes, flips, labels, rows = [], [], [], []
    for b, (frames, views, label, row) in enumerate(decoded):
        x[b, :, : frames.shape[1], : frames.shape[2]] = torch.from_numpy(frames)
        for box, flip in views:
            boxes.append(box)
            flips.append(flip)
        labels += [label] * ds.views
        rows += [row] * ds.views
    return PreCollated(x, labels, rows, items[0][0], torch.tensor(boxes, dtype=torch.int32),
                       torch.tensor(flips, dtype=torch.bool), ds.views)  # fmt: skip


def _batch_tensor(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised uint8 tensor; in a DataLoader worker its storage is shared memory from the
    start, so sending it to the main process copies nothing (as `default_collate` does)."""
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=torch.uint8)
    storage = torch.UntypedStorage._new_shared(math.prod(shape))
    return torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)


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
    """Pre-training batches; the views of a repeated clip (`[views, C, T, S, S]`) become rows."""
    if isinstance(items, PreCollated):
        batch = {
            "x": items.x,
            "y": torch.tensor(items.labels, dtype=torch.int64),
            "modality": items.source,
            "row": torch.tensor(items.rows, dtype=torch.int64),
        }
        if items.boxes is not None:  # decoded clips + their views' boxes (cut on the device)
            batch |= {"boxes": items.boxes, "flip": items.flip, "views": items.views}
        return batch
    if items and items[0][0].ndim == 5:
        items = [(view, y, row, src) for clip, y, row, src in items for view in clip]
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
    randaug: str | None = "rand-m7-n4-mstd0.5-inc1",
    frame_stride: int = 4,
    resample_sfer_each_epoch: bool = False,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    random_erasing: float = 0.0,
    sfer_sampling: str = "subset",
    sfer_batch_factor: int = 1,
    sfer_augment: str = "video",
    sfer_resize: float = 1.2,
    sfer_randaug: str | None = SFER_RANDAUGMENT,
) -> TrainSet:
    """Joint (or single-task) fine-tuning loader: batches from ONE source each, `task` "dfer" or
    "sfer". `fold` selects the DFER dataset's fold (None for FERV39K). `sfer_proportion` is the
    fraction of the SFER training set used, applied only when both tasks train: `sfer_sampling`
    "subset" = a fixed uniform subset per run (unless `resample_sfer_each_epoch`), "balanced" = a
    fresh class-balanced draw with replacement each epoch (the authors'). SFER batches hold
    `sfer_batch_factor` x `batch_size` images, augmented as the videos (`sfer_augment` "video") or
    by the authors' resize-and-crop (`"resize_crop"`). `batch_size` is per rank."""
    from unilearn.data.samplers import JointBatchSampler

    if sfer_sampling not in ("subset", "balanced"):
        raise ValueError(f"sfer_sampling {sfer_sampling!r}: expected subset or balanced")
    kw = {"num_frames": num_frames, "input_size": input_size, "frame_stride": frame_stride}
    video_aug = TrainClipTransform(
        input_size, randaug, scale=tuple(crop_scale), erasing=random_erasing
    )
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
            store, dfer_dataset, fold, "train", transform=video_aug, **kw
        )
    if sfer_dataset:
        sources["sfer"] = _train_source(
            store, sfer_dataset, None, "train", transform=image_aug, **kw
        )
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
    return _one_source_batches(sources, sampler, num_workers, _collate_pretrain)


def _train_source(
    store: str | Path, dataset: str, fold: int | None, mode: str, **kw
) -> ClipDataset:
    """The train rows of (dataset, fold) as one source of a one-source-per-batch loader."""
    return ClipDataset(store, load_store_table(store, dataset, fold, "train"), mode, **kw)


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
) -> DataLoader:
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
    return _data_loader(ds, num_workers, batch_sampler=sampler, collate_fn=_EvalCollate(task))
