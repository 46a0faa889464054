"""From clips to batches: `SourceDataset` (several `ClipDataset`s addressed as `(source, index,
sample_seed)`, for the one-source-per-batch samplers of `unilearn.data.samplers`; repeated-view
pre-training batches written straight into one tensor, `PreCollated`) and the collation of
fine-tuning, pre-training and test batches (see `unilearn.data.loaders` for the batch dicts).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import pandas as pd
import torch
from torch.utils.data import Dataset

from unilearn.data.clip_dataset import ClipDataset, UnreadableClip


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


def collate_pretrain(items):
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


class EvalCollate:
    """Test batches of one task; unreadable test clips are left out and named."""

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
