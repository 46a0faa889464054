"""The clip store: face clips as JPEG frames (or H.264 groups) packed into large shard files,
addressed by key.

Chosen by measurement (bench/store_formats.py, docs/data-loading.md): reading 16 frames of a
176x176 clip takes ~3.4 ms from a JPEG shard, 16-75 ms from an mp4 container of short-GOP H.264
(decord or PyAV seeking) and 0.3 ms from raw uint8, while raw uint8 needs ~11x the bytes of JPEG:
JPEG, whose frames decode alone, is every store's default, so any temporal pattern (stride 4,
uniform segments) costs the same. A store that must keep every frame of a large video set (the
pre-training VoxCeleb2 store, read at stride 4 from any start) may use H.264 with no container,
in closed groups of phase streams that a stride-4 read decodes few of (`unilearn.data.h264`;
`bench/store_size.py`: ~0.7x the bytes of every 4th frame as JPEG, ~1.25x its read time).

Layout: `STORE/DATASET/shard-NNNNN.ulc` hold records; a record is a 16-byte header
(`ULC1`, n_frames u32, height u16, width u16, codec u8, group u8, phases u8, 1 reserved),
`n_chunks + 1` u32 offsets relative to the end of the offset table, then the chunks: JPEG, one chunk per frame
(group and phases 0, as every record before H.264); H.264 (`unilearn.data.h264`,
`data.store.codec: h264`), one closed group of `group` frames of one of `phases` phase streams per
chunk, which decodes alone, so every frame can be kept for a loader that starts on any frame in
fewer bytes than JPEG keeps every 4th. A store key
`DATASET/shard-NNNNN.ulc:OFFSET` names the record's shard and byte offset, so reading needs no
index lookup and scales to millions of clips. Beside each shard, `journal-NNNNN.jsonl` lists the
clips whose records are durably written (one JSON line each, written only after the shard data was
fsync'ed): a killed writer leaves at most an unreferenced tail, and a re-run resumes from the
journals. Shards are never appended to by a later run.

Several writers may fill one dataset folder at the same time (`unilearn preprocess --shard i/N`):
each claims its next shard number by creating the file exclusively, so no two ever share a shard
or a journal. A store may keep only every k-th source frame (`settings.json`'s `frame_stride`,
for data that pre-training alone reads at that stride): `read_stride` maps a loader's stride onto
it and refuses one the store cannot serve.

`STORE/DATASET.parquet` (written by `unilearn preprocess`) is the store table: one row per stored
clip per (fold, split) with its `store_key`; `load_store_table` gives the rows one (dataset, fold,
split) selects, what the datasets and the config's dry run read.
"""

from __future__ import annotations

import json
import mmap
import os
import re
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from unilearn.catalogue import DATASETS, STORE_CODECS, get_label_set
from unilearn.data import h264
from unilearn.errors import InputError, read_parquet
from unilearn.layout import store_settings

MAGIC = b"ULC1"
CODECS = dict(zip(STORE_CODECS, (1, 2)))  # a record's codec byte (JPEG's 1: every older record)
_HEADER = struct.Struct("<4sIHHBBBx")
_SHARD_RE = re.compile(r"shard-(\d{5})\.ulc$")


class StoreError(RuntimeError):
    """A store key or record is invalid; the message names the key and the problem."""


def encode_clip(frames: np.ndarray, quality: int = 90, codec: str = "jpeg") -> bytes:
    """RGB uint8 `[T, H, W, 3]` -> one store record: JPEG per frame (OpenCV/libjpeg-turbo, at
    `quality`), or H.264 groups (`unilearn.data.h264`; `quality` does not apply)."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(
            f"encode_clip expects RGB uint8 [T, H, W, 3] with T > 0, got {frames.dtype} {frames.shape}"
        )
    if codec not in CODECS:
        raise ValueError(f"codec {codec!r}: expected one of {sorted(CODECS)}")
    t, h, w, _ = frames.shape
    if codec == "h264":
        parts, group, phases = h264.encode_clip_chunks(frames), h264.GOP, h264.PHASES
    else:  # group and phases 0 (as every record before H.264): a frame per chunk
        parts, group, phases = [_jpeg(frame, quality) for frame in frames], 0, 0
    offsets = np.zeros(len(parts) + 1, np.uint32)
    offsets[1:] = np.cumsum([len(p) for p in parts])
    header = _HEADER.pack(MAGIC, t, h, w, CODECS[codec], group, phases)
    return header + offsets.tobytes() + b"".join(parts)


def _jpeg(frame: np.ndarray, quality: int) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(frame[..., ::-1]), params)
    if not ok:
        raise ValueError(f"JPEG encoding failed for a {frame.shape[0]}x{frame.shape[1]} frame")
    return buf.tobytes()


@dataclass(frozen=True)
class ClipInfo:
    n_frames: int
    height: int
    width: int
    codec: str = "jpeg"
    group: int = 1  # frames per chunk: 1 for JPEG, H.264's group length (in its phase stream)
    phases: int = 1  # H.264's phase streams (frame i in stream i % phases)


def parse_key(key: str) -> tuple[str, int]:
    """`DATASET/shard-00001.ulc:1234` -> (relative shard path, byte offset)."""
    shard, sep, offset = key.rpartition(":")
    if not sep or not offset.isdigit() or not _SHARD_RE.search(shard):
        raise StoreError(f"store key {key!r} is not of the form DATASET/shard-NNNNN.ulc:OFFSET")
    return shard, int(offset)


class ClipStore:
    """Read clips: `ClipStore(root).read(key, indices) -> uint8 tensor [T, C, H, W]`.

    Shards are memory-mapped on first use (per process; DataLoader workers each map their own) and
    the file descriptor closed at once, so thousands of shards cost no file handles.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self._maps: dict[str, mmap.mmap] = {}

    def __getstate__(self) -> dict:  # mmaps do not pickle: workers re-open lazily
        return {"root": self.root, "_maps": {}}

    def _shard(self, rel: str) -> mmap.mmap:
        mm = self._maps.get(rel)
        if mm is None:
            path = self.root / rel
            try:
                with open(path, "rb") as f:
                    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (FileNotFoundError, ValueError) as exc:
                raise StoreError(f"{path}: shard missing or empty ({exc})") from None
            self._maps[rel] = mm
        return mm

    def _record(self, key: str) -> tuple[mmap.mmap, ClipInfo, np.ndarray, int]:
        rel, offset = parse_key(key)
        mm = self._shard(rel)
        if offset + _HEADER.size > len(mm):
            raise StoreError(f"store key {key!r}: offset beyond the end of {self.root / rel}")
        magic, n, h, w, codec, group, phases = _HEADER.unpack_from(mm, offset)
        name = next((c for c, byte in CODECS.items() if byte == codec), None)
        if magic != MAGIC or name is None:
            raise StoreError(
                f"store key {key!r}: no clip record at this offset of {self.root / rel}"
            )
        group, phases = max(group, 1), max(phases, 1)
        table = offset + _HEADER.size
        n_chunks = h264.n_chunks(n, group, phases)
        if table + 4 * (n_chunks + 1) > len(mm):
            raise StoreError(f"store key {key!r}: record truncated in {self.root / rel}")
        offsets = np.frombuffer(mm, np.uint32, n_chunks + 1, table)
        data = table + 4 * (n_chunks + 1)
        if data + int(offsets[-1]) > len(mm):
            raise StoreError(f"store key {key!r}: record truncated in {self.root / rel}")
        return mm, ClipInfo(n, h, w, name, group, phases), offsets, data

    def record_bytes(self, key: str) -> bytes:
        """The stored record of clip `key`, byte for byte (header, offsets, chunks)."""
        rel, offset = parse_key(key)
        _, info, offsets, data = self._record(key)
        return bytes(self._shard(rel)[offset : data + int(offsets[-1])])

    def info(self, key: str) -> ClipInfo:
        return self._record(key)[1]

    def num_frames(self, key: str) -> int:
        return self._record(key)[1].n_frames

    def read_numpy(self, key: str, indices: Sequence[int] | None = None) -> np.ndarray:
        """Frames `indices` (default all) of clip `key` as RGB uint8 `[T, H, W, 3]` (the loaders'
        fast path: the layout the decoders produce, no copy of the clip). A frame asked for twice
        (short clips) is decoded once."""
        mm, info, offsets, data = self._record(key)
        idx = range(info.n_frames) if indices is None else [int(i) for i in indices]
        for i in idx:
            if not 0 <= i < info.n_frames:
                raise StoreError(
                    f"store key {key!r}: frame {i} requested, clip has {info.n_frames}"
                )
        out = np.empty((len(idx), info.height, info.width, 3), np.uint8)

        def chunk(c: int) -> np.ndarray:
            start, end = int(offsets[c]), int(offsets[c + 1])
            return np.frombuffer(mm, np.uint8, end - start, data + start)

        decoded: dict[int, np.ndarray] = {}
        if info.codec == "h264":
            try:
                decoded = h264.read_frames(chunk, idx, info.n_frames, info.group, info.phases,
                                           (info.height, info.width))  # fmt: skip
            except ValueError as err:
                raise StoreError(f"store key {key!r}: {err}") from None
        for j, i in enumerate(idx):
            frame = decoded.get(i)
            if frame is None:
                frame = cv2.imdecode(chunk(i), cv2.IMREAD_COLOR_RGB)
                if frame is None or frame.shape != out.shape[1:]:
                    raise StoreError(
                        f"store key {key!r}: frame {i} does not decode to {info.height}x{info.width}"
                    )
                decoded[i] = frame
            out[j] = frame
        return out

    def read(self, key: str, indices: Sequence[int] | None = None):
        """Frames `indices` (default all) of clip `key` as a uint8 tensor `[T, C, H, W]` (a
        channel-first view of `read_numpy`; call `.contiguous()` if a kernel needs it)."""
        import torch

        return torch.from_numpy(self.read_numpy(key, indices)).permute(0, 3, 1, 2)


class StoreWriter:
    """Appends records for one dataset to a new shard and journals them crash-safely.

    `add(clip_id, record, **meta)` queues a clip; `fail(clip_id, reason)` journals a failure.
    Every `flush_every` clips or `flush_seconds` the shard is fsync'ed, then the queued journal
    lines are written and fsync'ed: a journal line always points at durable bytes.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        dataset: str,
        max_shard_bytes: int = 1 << 30,
        flush_every: int = 64,
        flush_seconds: float = 5.0,
    ) -> None:
        self.root = Path(root)
        self.dataset = dataset
        self.dir = self.root / dataset
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_shard_bytes = max_shard_bytes
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self._shard = None
        self._journal = None
        self._pending: list[dict] = []
        self._last_flush = time.monotonic()

    def _open_next(self) -> None:
        self._close_files()
        used = [int(m.group(1)) for p in self.dir.iterdir() if (m := _SHARD_RE.search(p.name))]
        seq = max(used, default=0) + 1
        while True:
            # "xb" (O_EXCL): never reuse a shard a killed run may have left with a torn tail, and
            # a concurrent writer that took this number first makes us take the next one (two
            # writers used to compute the same number and the second died on FileExistsError).
            try:
                self._shard = open(self.dir / f"shard-{seq:05d}.ulc", "xb")  # noqa: SIM115
                break
            except FileExistsError:
                seq += 1
        self._shard_name = f"shard-{seq:05d}.ulc"
        self._journal = open(self.dir / f"journal-{seq:05d}.jsonl", "ab")  # noqa: SIM115

    def add(self, clip_id: str, record: bytes, **meta) -> str:
        if (
            self._shard is None
            or self._shard.tell() + len(record) > self.max_shard_bytes
            and self._shard.tell() > 0
        ):
            self.flush()
            self._open_next()
        offset = self._shard.tell()
        self._shard.write(record)
        key = f"{self.dataset}/{self._shard_name}:{offset}"
        self._pending.append({"clip_id": clip_id, "store_key": key, **meta})
        self._maybe_flush()
        return key

    def fail(self, clip_id: str, reason: str) -> None:
        if self._shard is None:
            self._open_next()
        self._pending.append({"clip_id": clip_id, "reason": reason})
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        if (
            len(self._pending) >= self.flush_every
            or time.monotonic() - self._last_flush > self.flush_seconds
        ):
            self.flush()

    def flush(self) -> None:
        if self._shard is None:
            return
        self._shard.flush()
        os.fsync(self._shard.fileno())
        if self._pending:
            lines = "".join(json.dumps(e, sort_keys=True) + "\n" for e in self._pending)
            self._journal.write(lines.encode())
            self._journal.flush()
            os.fsync(self._journal.fileno())
            self._pending.clear()
        self._last_flush = time.monotonic()

    def _close_files(self) -> None:
        for f in (self._shard, self._journal):
            if f is not None:
                f.close()
        self._shard = self._journal = None

    def close(self) -> None:
        self.flush()
        self._close_files()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_journal(root: str | os.PathLike, dataset: str) -> dict[str, dict]:
    """clip_id -> its latest journal entry (`store_key` + meta, or `reason`) for one dataset.

    A torn last line (killed writer) is ignored; its clip is simply not done yet.
    """
    entries: dict[str, dict] = {}
    folder = Path(root) / dataset
    if not folder.is_dir():
        return entries
    for path in sorted(folder.glob("journal-*.jsonl")):
        for line in _lines(path):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            entries[entry["clip_id"]] = entry
    return entries


def _lines(path: Path) -> Iterable[str]:
    with open(path, encoding="utf-8", errors="replace") as f:
        yield from f


def stored_frame_stride(root: str | os.PathLike, dataset_dir: str) -> int:
    """Every how many source frames the store folder `dataset_dir` keeps one (1: all frames)."""
    path = store_settings(root, dataset_dir)
    if not path.is_file():
        return 1
    return int(json.loads(path.read_text()).get("frame_stride", 1))


def read_stride(root: str | os.PathLike, keys: Sequence[str], frame_stride: int) -> int:
    """The stride in stored frames that samples every `frame_stride`-th source frame of the clips
    `keys`. Raises `StoreError` when their store keeps only every k-th frame and k does not divide
    `frame_stride`: such a loader would read frames that are not in the store."""
    kept = {stored_frame_stride(root, d) for d in {str(k).split("/", 1)[0] for k in keys}}
    if len(kept) > 1:
        raise StoreError(f"{root}: the clips come from stores with different frame strides {kept}")
    k = kept.pop() if kept else 1
    if frame_stride % k:
        raise StoreError(
            f"{root}: the store keeps every {k}-th frame (settings.json frame_stride), so it cannot "
            f"serve frame_stride {frame_stride}; use a multiple of {k} or preprocess with "
            "--frame-stride 1"
        )
    return frame_stride // k


# ---- the store table: which stored clips one (dataset, fold, split) selects ---------------------


def load_store_table(
    store: str | Path, dataset: str, fold: int | None = None, split: str | None = None
) -> pd.DataFrame:
    """Rows of `STORE/DATASET.parquet` for one fold and split, re-indexed 0..n-1.

    `affectnet7` reads `affectnet7.parquet` if preprocessing wrote one, else the table its clips
    come from (`unilearn.catalogue`'s `store_table`: the 8-class AffectNet) without the classes
    its label set leaves out (contempt: AffectNet-7's definition; ids 0-6 are shared).
    `fold` is required for datasets with folds (DFEW, MAFW) and must be None for the others.
    """
    store = Path(store)
    path = store / f"{dataset}.parquet"
    spec = DATASETS.get(dataset)
    if spec is not None and spec.store and not path.exists():
        path = store / f"{spec.store_table}.parquet"
        table = _read_table(path)
        classes = get_label_set(DATASETS[spec.store_table].label_set).classes
        left_out = [classes.index(c) for c in get_label_set(spec.label_set).excluded]
        table = table[~table["label"].isin(left_out)]
    else:
        table = _read_table(path)
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


def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: store table missing; run `unilearn preprocess` for this dataset"
        )
    return read_parquet(path, "store table")
