"""Manifest rows -> the clip store (the orchestration behind `unilearn preprocess`).

`preprocess(manifest, out, settings)` decodes each clip of a manifest, finds its face where needed
(`unilearn.data.face_clip`, the path `unilearn predict` shares), crops and resizes it and writes
the store: STORE/DATASET.parquet (manifest rows + store_key, stored n_frames, height, width) and
STORE/DATASET.quarantine.parquet (rows of clips that failed, with the reason). Each clip is stored
once even when several folds list it. Parallel over clips (`unilearn.data.worker_pool`: one clip
that kills its worker is quarantined, the others are stored); resumable: a re-run (also after a
kill) does only clips not yet in the store's journals. One bad clip never stops the run.

Which clips are detected: with `detect="auto"`, datasets distributed face-cropped
(`unilearn.catalogue.FACE_CROPPED_DATASETS`) are only resized; any other dataset, or rows whose
optional `face_cropped` column is false, go through detection + tracking. Rows with AffectNet's
annotation box (`BOX_COLUMNS`) are cropped to that box. The store's `framing` (recorded in its
settings.json; `unilearn.catalogue.FRAMINGS`) then frames each kind of row: VoxCeleb2's
`authors_region` cuts the authors' fixed region of the resized rows, MAFW's `authors_mtcnn`
detects every frame of its detected rows (as the authors' crop did) and leaves out frames with no
face (counted in the summary), AffectNet's `aligned_5point` aligns the face found in the
annotation box (the box's plain crop where none is found). Clips framed otherwise than the store
(that fallback, or rows marked face-cropped: resized) are counted in the summary by framing.

Shards: `preprocess(..., shard=(i, n))` stores the clips of part i of n (split by a hash of the
clip id, `shard_of`) and leaves `DATASET/parts/*.done.json` when done; `merge(manifest, out, n)`
writes the store tables once every part is done. The result equals one unsharded run: the same
records, in other shard files.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from unilearn.atomic import write_parquet, write_text
from unilearn.catalogue import FACE_CROPPED_DATASETS
from unilearn.data.decode import MediaError, read_media
from unilearn.data.face import NoFaceError
from unilearn.data.face_clip import (
    PreprocessSettings,
    cut_face_clip,
    locate_face,
    recorded_settings,
    resolve_framing,
    row_framing,
)
from unilearn.data.preprocess_summary import Summary
from unilearn.data.store import StoreWriter, encode_clip, read_journal
from unilearn.data.worker_pool import map_surviving_crashes
from unilearn.errors import read_parquet
from unilearn.layout import (
    QUARANTINE,
    shard_marker,
    sidecar_path,
    store_settings,
    store_table,
)

# AffectNet's annotated face box (manifest columns): rows that have one are cropped to it.
BOX_COLUMNS = ("face_x", "face_y", "face_width", "face_height")


@dataclass(frozen=True)
class ClipTask:
    clip_id: str
    path: str
    media: str
    detect: bool
    box: tuple[float, float, float, float] | None


class ShardFailed(RuntimeError):
    """A shard stopped before all its clips were stored or quarantined; names the clips left."""


class ShardsIncomplete(RuntimeError):
    """`--merge` found shards not (or not freshly) done; names them."""


def shard_of(clip_id: str, n_shards: int) -> int:
    """The shard (1..n) a clip belongs to: a hash of its id, the same on every machine and run."""
    digest = hashlib.blake2b(str(clip_id).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n_shards + 1


def preprocess(
    manifest: str | os.PathLike,
    out: str | os.PathLike,
    settings: PreprocessSettings,
    workers: int = 0,
    retry_failed: bool = False,
    limit: int | None = None,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
) -> Summary:
    """Store every clip of `manifest` under `out` (or, with `shard=(i, n)`, the clips of part i
    of n, and mark the part done instead of writing the tables); returns the counts."""
    start = time.monotonic()
    manifest, out = Path(manifest), Path(out)
    rows = read_parquet(manifest, "manifest")
    dataset = manifest.stem
    settings = replace(settings, framing=resolve_framing(settings.framing, dataset))
    if settings.framing in ("authors_mtcnn", "aligned_5point") and settings.detector == "haar":
        raise ValueError(
            f"{manifest}: framing {settings.framing} needs MTCNN's landmarks; --detector haar has "
            "none (use --detector auto or mtcnn, or the framing `default`)"
        )
    _check_manifest(rows, manifest)
    _check_settings(out, dataset, settings)
    tasks = _tasks(rows, settings, manifest)
    if shard is not None:
        tasks = [t for t in tasks if shard_of(t.clip_id, shard[1]) == shard[0]]
        _part_path(out, dataset, shard).unlink(missing_ok=True)  # not done until this run says so
    done = read_journal(out, dataset)
    todo = [
        t for t in tasks if t.clip_id not in done or (retry_failed and "reason" in done[t.clip_id])
    ]
    already = len(tasks) - len(todo)
    pending = 0
    if limit is not None and len(todo) > limit:
        pending, todo = len(todo) - limit, todo[:limit]
    stored_now = failed_now = 0
    finished: set[str] = set()
    try:
        if todo:
            with StoreWriter(out, dataset) as writer:
                for task, result in _run(todo, settings, workers, progress, dataset):
                    if isinstance(result, str):
                        writer.fail(task.clip_id, result)
                        failed_now += 1
                    else:
                        record, meta = result
                        writer.add(task.clip_id, record, **meta)
                        stored_now += 1
                    finished.add(task.clip_id)
    except Exception as exc:
        if shard is None:
            raise
        left = [t.clip_id for t in todo if t.clip_id not in finished]
        listing = _part_path(out, dataset, shard, "failed.txt")
        write_text(listing, "".join(f"{c}\n" for c in left))
        raise ShardFailed(
            f"{manifest}: shard {shard[0]}/{shard[1]} stopped ({type(exc).__name__}: {exc}) with "
            f"{len(left)} clip(s) not done: {', '.join(left[:10])}"
            f"{' ...' if len(left) > 10 else ''} (all listed in {listing}); re-run to resume"
        ) from exc
    summary = Summary(
        dataset, len(rows), len(tasks), already, stored_now, failed_now, 0, 0, Counter(),
        time.monotonic() - start, pending, shard,
    )  # fmt: skip
    if shard is not None:
        if not pending:
            _mark_part_done(out, dataset, shard, tasks, summary)
        return summary
    return _write_tables(rows, out, dataset, summary)


def merge(manifest: str | os.PathLike, out: str | os.PathLike, n_shards: int) -> Summary:
    """Write the store tables of a sharded run once all `n_shards` parts are done for this
    manifest; raises `ShardsIncomplete` naming the parts that are missing or stale."""
    start = time.monotonic()
    manifest, out = Path(manifest), Path(out)
    rows = read_parquet(manifest, "manifest")
    dataset = manifest.stem
    _check_manifest(rows, manifest)
    ids = rows["clip_id"].astype(str).drop_duplicates().tolist()
    by_shard: dict[int, list[str]] = {}
    for clip_id in ids:
        by_shard.setdefault(shard_of(clip_id, n_shards), []).append(clip_id)
    missing, stale = [], []
    for i in range(1, n_shards + 1):
        path = _part_path(out, dataset, (i, n_shards))
        if not path.is_file():
            missing.append(i)
        elif json.loads(path.read_text()).get("clips_sha256") != _ids_digest(by_shard.get(i, [])):
            stale.append(i)
    if missing or stale:
        journal = read_journal(out, dataset)  # a part killed outright left no listing: name them
        left = [c for i in missing + stale for c in by_shard.get(i, []) if c not in journal]
        what = [f"{len(missing)} not done: {_ranges(missing)}"] if missing else []
        what += [f"{len(stale)} done for another manifest: {_ranges(stale)}"] if stale else []
        raise ShardsIncomplete(
            f"{out / dataset / 'parts'}: {n_shards} shards of {manifest}, {'; '.join(what)}; "
            f"{len(left)} of their clips not stored yet"
            + (f" ({', '.join(left[:10])}{' ...' if len(left) > 10 else ''})" if left else "")
            + f"; run `unilearn preprocess --manifest {manifest} --out {out} --shard I/{n_shards}` "
            "for those first"
        )
    summary = Summary(dataset, len(rows), len(ids), len(ids), 0, 0, 0, 0, Counter(), 0.0, 0)
    summary = _write_tables(rows, out, dataset, summary)
    summary.seconds = time.monotonic() - start
    return summary


def _write_tables(rows: pd.DataFrame, out: Path, dataset: str, summary: Summary) -> Summary:
    journal = read_journal(out, dataset)
    stored, quarantined = _tables(rows, journal)
    recorded = _store_settings(out, dataset)
    summary.framing, summary.codec = recorded["framing"], recorded["codec"]
    ok = [e for e in journal.values() if "store_key" in e]
    summary.clips_short = sum(1 for e in ok if e.get("frames_without_face"))
    summary.frames_without_face = sum(int(e.get("frames_without_face", 0)) for e in ok)
    summary.other_framings = Counter(e["framing"] for e in ok if "framing" in e)
    write_parquet(stored, store_table(out, dataset))
    write_parquet(quarantined, sidecar_path(store_table(out, dataset), QUARANTINE))
    summary.stored_rows, summary.quarantined_rows = len(stored), len(quarantined)
    summary.reasons = Counter(
        r.split(":", 1)[0] for r in quarantined.drop_duplicates("clip_id")["reason"]
    )
    summary.seconds = max(summary.seconds, 0.0)
    return summary


def _store_settings(out: Path, dataset: str) -> dict:
    """What a store's settings.json records, keys added since filled in (`recorded_settings`)."""
    path = store_settings(out, dataset)
    return recorded_settings(json.loads(path.read_text()) if path.is_file() else {})


def _part_path(out: Path, dataset: str, shard: tuple[int, int], kind: str = "done.json") -> Path:
    """`parts/shard-IIII-of-NNNN.done.json` (the part is done) or `.failed.txt` (clips left)."""
    return shard_marker(out, dataset, *shard, kind=kind)


def _ids_digest(clip_ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(clip_ids)).encode()).hexdigest()


def _mark_part_done(
    out: Path, dataset: str, shard: tuple[int, int], tasks: list[ClipTask], summary: Summary
) -> None:
    journal = read_journal(out, dataset)
    failed = sum("reason" in journal.get(t.clip_id, {}) for t in tasks)
    marker = {
        "shard": shard[0],
        "of": shard[1],
        "clips": len(tasks),
        "stored": len(tasks) - failed,
        "quarantined": failed,
        "clips_sha256": _ids_digest([t.clip_id for t in tasks]),
    }
    path = _part_path(out, dataset, shard)
    write_text(path, json.dumps(marker, indent=2, sort_keys=True) + "\n")
    _part_path(out, dataset, shard, "failed.txt").unlink(missing_ok=True)


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 7] -> "1-3, 7"."""
    parts, start = [], None
    for k, n in enumerate(numbers):
        if start is None:
            start = n
        if k + 1 == len(numbers) or numbers[k + 1] != n + 1:
            parts.append(f"{start}-{n}" if n > start else f"{n}")
            start = None
    return ", ".join(parts)


def _check_manifest(rows: pd.DataFrame, manifest: Path) -> None:
    missing = {"clip_id", "path", "media"} - set(rows.columns)
    if missing:
        raise ValueError(
            f"{manifest}: manifest lacks columns {sorted(missing)} (see docs/ARCHITECTURE.md)"
        )
    paths = rows.groupby("clip_id")["path"].nunique()
    if (paths > 1).any():
        bad = paths[paths > 1].index[0]
        raise ValueError(f"{manifest}: clip_id {bad!r} is listed with different paths")


def _check_settings(out: Path, dataset: str, settings: PreprocessSettings) -> None:
    path = store_settings(out, dataset)
    wanted = json.loads(json.dumps(asdict(settings)))
    if path.exists():
        have = recorded_settings(json.loads(path.read_text()))
        if have != wanted:
            diff = {k: (have.get(k), wanted.get(k)) for k in wanted if have.get(k) != wanted.get(k)}
            raise ValueError(
                f"{path}: store was built with other settings {diff} (existing, requested); a "
                "store holds the pixels of one setting, never a mix: use another --out"
            )
    else:
        write_text(path, json.dumps(wanted, indent=2, sort_keys=True) + "\n")


def _tasks(rows: pd.DataFrame, settings: PreprocessSettings, manifest: Path) -> list[ClipTask]:
    has_box = all(c in rows.columns for c in BOX_COLUMNS)
    tasks = []
    for _, row in rows.drop_duplicates("clip_id").iterrows():
        box = None
        if has_box and all(pd.notna(row[c]) for c in BOX_COLUMNS):
            x, y, w, h = (float(row[c]) for c in BOX_COLUMNS)
            box = (x, y, x + w, y + h)
        if settings.detect == "auto":
            cropped = (
                row["face_cropped"]
                if "face_cropped" in rows.columns and pd.notna(row.get("face_cropped"))
                else None
            )
            detect = (
                not bool(cropped)
                if cropped is not None
                else str(row.get("dataset", manifest.stem)) not in FACE_CROPPED_DATASETS
            )
        else:
            detect = settings.detect == "always"
        tasks.append(
            ClipTask(
                str(row["clip_id"]),
                str(row["path"]),
                str(row["media"]),
                detect and box is None,
                box,
            )
        )
    return tasks


def _tables(rows: pd.DataFrame, journal: dict[str, dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    ok = {k: v for k, v in journal.items() if "store_key" in v}
    failed = {k: v["reason"] for k, v in journal.items() if "reason" in v}
    ids = rows["clip_id"].astype(str)
    stored = rows[ids.isin(ok)].copy()
    meta = pd.DataFrame(
        [
            {"clip_id": k, **{c: v[c] for c in ("store_key", "n_frames", "height", "width")}}
            for k, v in ok.items()
        ]
    )
    if len(stored):
        meta = meta.set_index("clip_id")
        sid = stored["clip_id"].astype(str)
        stored["store_key"] = sid.map(meta["store_key"]).astype(str)
        stored["n_frames"] = sid.map(meta["n_frames"]).astype("int32")
        stored["height"] = sid.map(meta["height"]).astype("int32")
        stored["width"] = sid.map(meta["width"]).astype("int32")
    else:
        stored = stored.assign(
            store_key=pd.Series(dtype=str),
            height=pd.Series(dtype="int32"),
            width=pd.Series(dtype="int32"),
        )
    quarantined = rows[ids.isin(failed)].copy()
    quarantined["reason"] = quarantined["clip_id"].astype(str).map(failed).astype(str)
    quarantined["reason_code"] = quarantined["reason"].map(reason_code)
    return stored.reset_index(drop=True), quarantined.reset_index(drop=True)


REASON_CODES = {
    "no face": "no_face",
    "unreadable media": "unreadable_media",
    "worker crashed": "worker_crashed",
    "out of memory": "out_of_memory",
}


def reason_code(reason: str) -> str:
    """The machine-readable code of a quarantine reason (`no_face`, `unreadable_media`, ...)."""
    return REASON_CODES.get(reason.split(":", 1)[0], "error")


# ---- per-clip work (runs in worker processes) -------------------------------------------------


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # the pool parallelises over clips
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def process_clip(task: ClipTask, settings: PreprocessSettings) -> tuple[bytes, dict] | str:
    """One clip -> (store record, meta) or the quarantine reason. Never raises."""
    try:
        frames = read_media(task.path, task.media)
        if len(frames) == 0:
            raise MediaError(f"{task.path}: no frames")
        keep = list(range(0, len(frames), settings.frame_stride))
        boxes, _ = locate_face(frames, settings, detect=task.detect, box=task.box, only=keep)
        notes = {}
        framing = row_framing(settings.framing, detect=task.detect, box=task.box)
        if framing == "authors_mtcnn":  # as theirs: a frame where MTCNN finds no face is left out
            found = [i for i in keep if np.isfinite(boxes[i, 0])]
            if len(found) < len(keep):
                notes["frames_without_face"] = len(keep) - len(found)
            keep = found
        elif framing == "aligned_5point" and (boxes is None or boxes.ndim != 3):
            framing = "box"  # no face inside the box: its plain crop
        if framing != settings.framing and settings.framing != "default":
            notes["framing"] = framing  # said in the summary: not the store's framing
        frames = cut_face_clip(frames, boxes, settings, keep=keep)
        record = encode_clip(frames, settings.jpeg_quality, settings.codec)
        return record, {
            "n_frames": int(len(frames)),
            "height": int(frames.shape[1]),
            "width": int(frames.shape[2]),
            **notes,
        }
    except NoFaceError as exc:
        return f"no face: {task.path}: {exc}"
    except MediaError as exc:
        return f"unreadable media: {exc}"
    except MemoryError:
        return f"out of memory: {task.path}: clip too large to decode in memory"
    except Exception as exc:  # noqa: BLE001 - quarantine anything else with its type, never crash the run
        return f"{type(exc).__name__}: {task.path}: {exc}"


def _run(
    todo: list[ClipTask], settings: PreprocessSettings, workers: int, progress: bool, dataset: str
):
    """Yield (task, result) for every task, with a progress bar; in `workers` processes (robust
    to a clip that kills its worker) when workers > 0, else in this process."""
    from tqdm import tqdm

    if workers <= 0:
        _init_worker()
        clips = ((task, process_clip(task, settings)) for task in todo)
    else:
        clips = map_surviving_crashes(
            functools.partial(process_clip, settings=settings),
            todo,
            workers,
            crashed=_crashed,
            initializer=_init_worker,
            name="preprocess",
        )
    failed = 0
    with tqdm(
        total=len(todo),
        desc=f"preprocess {dataset}",
        unit="clip",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    ) as bar:
        for task, result in clips:
            failed += isinstance(result, str)
            bar.update()
            bar.set_postfix(failed=failed, refresh=False)
            yield task, result


def _crashed(task: ClipTask) -> str:
    """The quarantine reason of a clip whose decoding killed its worker process."""
    return f"worker crashed: {task.path}: decoding this clip killed the worker process"
