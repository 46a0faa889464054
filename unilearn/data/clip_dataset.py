"""`ClipDataset`: the clips of one store table as training clips (items `(index, sample_seed)`,
augmentation a pure function of the seed), pre-training clips, or test clips (int items, `n_clips`
uniformly spaced clips per video; `(index, epoch)` items with `placement_seed`: the authors'
validation clip, one per video at a position drawn from (seed, epoch, video)). Images are 2-frame
clips.

Unreadable clips at load time: preprocessing quarantines bad media, so this is rare (a damaged
shard). In training the dataset logs the clip and substitutes the next readable clip of the same
dataset (deterministic: index + 1, + 2, ...), counting substitutions in
`ClipDataset.substitutions`; after 16 unreadable clips in a row it raises, since the store itself
is then broken. A test clip is never substituted (its prediction would count for another clip):
it comes back as an `UnreadableClip`, which the eval batch leaves out and names in
`batch["unreadable"]` (rows and reasons).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from unilearn.data.frame_sampling import (
    eval_indices,
    finetune_indices,
    pretrain_indices,
    validation_indices,
)
from unilearn.data.store import ClipStore, read_stride
from unilearn.data.transforms import (
    EvalClipTransform,
    PretrainClipTransform,
    ResizedCropPretrainTransform,
)

log = logging.getLogger(__name__)

MAX_SUBSTITUTIONS = 16
IMAGE_FRAMES = 2  # an image is one tubelet: the frame repeated twice


class ClipDataset(Dataset):
    """Clips of one store table.

    `mode`: `train` (fine-tuning augmentation, MAE-DFER temporal sampling; items `(index, seed)`),
    `pretrain` (multi-scale crop, `num_frames` at `frame_stride` from a random start; items
    `(index, seed)`), `pretrain_image` (one random frame of each clip as an image, for the image
    modality; `(index, seed)`) or `eval` (int items, `n_clips` clips resized + centre-cropped).
    Returns `(clip uint8 [C, T, S, S] (eval: [n_clips, C, T, S, S]), label, row)`; `pretrain`
    with `views > 1` (repeated sampling) decodes the frames once and returns `views` clips
    `[views, C, T, S, S]`, each augmented with its own draw. `transform` replaces the mode's
    default augmentation (`train` has none: its augmentation is the config's).
    """

    def __init__(
        self,
        store: str | Path | ClipStore,
        table: pd.DataFrame,
        mode: str,
        *,
        num_frames: int,
        input_size: int,
        frame_stride: int,
        transform=None,
        n_clips: int | None = None,
        views: int = 1,
        crop_on_device: bool = False,
        placement_seed: int | None = None,
    ) -> None:
        if mode not in ("train", "pretrain", "pretrain_image", "eval"):
            raise ValueError(
                f"ClipDataset mode {mode!r}: expected train, pretrain, pretrain_image or eval"
            )
        if mode == "eval" and n_clips is None:
            raise ValueError("ClipDataset mode 'eval' needs n_clips (clips per video)")
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
        self.placement_seed = placement_seed  # eval `(index, epoch)` items: `validation_indices`
        ids = self.table["clip_id"] if "clip_id" in self.table else self.table["store_key"]
        self._ids = ids.astype(str).tolist()
        if transform is not None:
            self.transform = transform
        elif mode in ("pretrain", "pretrain_image"):
            self.transform = PretrainClipTransform(input_size)  # VideoMAE's multi-scale crop
        elif mode == "eval":
            self.transform = EvalClipTransform(input_size)
        else:  # the fine-tuning augmentation is the config's (`TrainClipTransform`)
            raise ValueError("ClipDataset mode 'train' needs its transform (a TrainClipTransform)")
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
            try:  # `seed` of an eval item is the epoch of its validation clip
                return self._load(int(index), seed), self._labels[index], int(index)
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
            if seed is None:
                clips = eval_indices(n, self.num_frames, self.frame_stride, self.n_clips)
            elif self.placement_seed is None:
                raise TypeError(f"eval item ({i}, {seed}): this dataset has no placement_seed")
            else:
                clips = [validation_indices(n, self.num_frames, self.frame_stride,
                                            self.placement_seed, seed, self._ids[i])]  # fmt: skip
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
