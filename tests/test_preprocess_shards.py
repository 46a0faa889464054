"""`unilearn preprocess --shard I/N` and `--merge N`: parts stored side by side by separate writers
equal one unsharded run record for record; a re-run redoes only unfinished parts; a part that
stops names its clips; `--frame-stride K` keeps every K-th frame and the loader never reads past it."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _media import manifest_frame, manifest_row, moving_pattern, write_frames, write_mp4

from unilearn.data import preprocess as pp
from unilearn.data.clip_dataset import ClipDataset
from unilearn.data.preprocess import (
    PreprocessSettings,
    ShardFailed,
    ShardsIncomplete,
    merge,
    preprocess,
    shard_of,
)
from unilearn.data.store import ClipStore, StoreError, read_stride

SETTINGS = PreprocessSettings(short_side=32, frame_stride=1, framing="default", codec="jpeg")
N_SHARDS = 3


def _manifest(tmp_path: Path, n_clips: int = 9) -> Path:
    """Frame-folder clips listed in two folds, one mp4 and one clip without frames."""
    src, rows = tmp_path / "src", []
    for i in range(n_clips):
        clip = write_frames(src / f"{i:05d}", moving_pattern(5 + i, 40, seed=i))
        for fold in (1, 2):
            rows.append(
                manifest_row("dfew", f"{i:05d}", clip, "frames", i % 7, 5 + i, "train", fold)
            )
    video = write_mp4(src / "v.mp4", moving_pattern(12, 40, seed=99))
    rows.append(manifest_row("dfew", "video", video, "video", 1, 12, "test", 1))
    (src / "empty").mkdir()
    rows.append(manifest_row("dfew", "empty", src / "empty", "frames", 2, 0, "test", 2))
    path = tmp_path / "dfew.parquet"
    manifest_frame(rows).to_parquet(path)
    return path


def _records(store: Path, dataset: str = "dfew") -> dict[str, bytes]:
    table = pd.read_parquet(store / f"{dataset}.parquet").drop_duplicates("clip_id")
    reader = ClipStore(store)
    return {row.clip_id: reader.record_bytes(row.store_key) for row in table.itertuples()}


def _run_shards_at_once(manifest: Path, store: Path, shards: list[int]) -> None:
    """The parts as concurrent writers of one store folder (threads: separate jobs on a cluster)."""
    start = threading.Barrier(len(shards))
    errors: list[BaseException] = []

    def one(i: int) -> None:
        start.wait()
        try:
            preprocess(manifest, store, SETTINGS, workers=0, progress=False, shard=(i, N_SHARDS))
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in shards]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def test_every_clip_belongs_to_exactly_one_shard_by_its_id():
    ids = [f"{i:05d}" for i in range(200)]
    shards = [shard_of(c, 4) for c in ids]
    assert set(shards) == {1, 2, 3, 4}
    assert shards == [shard_of(c, 4) for c in ids]  # deterministic: the id decides, not the order


def test_sharded_run_equals_unsharded_run_record_for_record(tmp_path):
    manifest = _manifest(tmp_path)
    whole = preprocess(manifest, tmp_path / "whole", SETTINGS, workers=0, progress=False)
    _run_shards_at_once(manifest, tmp_path / "sharded", list(range(1, N_SHARDS + 1)))
    merged = merge(manifest, tmp_path / "sharded", N_SHARDS)
    assert (merged.stored_rows, merged.quarantined_rows) == (
        whole.stored_rows,
        whole.quarantined_rows,
    )
    a = pd.read_parquet(tmp_path / "whole" / "dfew.parquet")
    b = pd.read_parquet(tmp_path / "sharded" / "dfew.parquet")
    pd.testing.assert_frame_equal(a.drop(columns="store_key"), b.drop(columns="store_key"))
    records_a, records_b = _records(tmp_path / "whole"), _records(tmp_path / "sharded")
    assert records_a.keys() == records_b.keys() and len(records_a) == 10
    assert all(records_a[c] == records_b[c] for c in records_a)  # byte-identical records
    qa = pd.read_parquet(tmp_path / "whole" / "dfew.quarantine.parquet")
    qb = pd.read_parquet(tmp_path / "sharded" / "dfew.quarantine.parquet")
    pd.testing.assert_frame_equal(qa, qb)
    # the concurrent writers each took their own shard files
    shards = sorted((tmp_path / "sharded" / "dfew").glob("shard-*.ulc"))
    assert len(shards) == N_SHARDS


def test_merge_names_unfinished_shards_and_a_rerun_redoes_only_those(tmp_path):
    manifest, store = _manifest(tmp_path), tmp_path / "store"
    _run_shards_at_once(manifest, store, [1, 3])
    with pytest.raises(ShardsIncomplete, match=r"1 not done: 2;") as err:
        merge(manifest, store, N_SHARDS)
    in_manifest_order = [*(f"{k:05d}" for k in range(9)), "video", "empty"]
    left = [c for c in in_manifest_order if shard_of(c, N_SHARDS) == 2]
    assert f"{len(left)} of their clips not stored yet ({', '.join(left[:10])}" in str(err.value)
    assert not (store / "dfew.parquet").exists()
    again = preprocess(manifest, store, SETTINGS, workers=0, progress=False, shard=(1, N_SHARDS))
    assert again.stored_now == again.failed_now == 0 and again.already == again.clips > 0
    preprocess(manifest, store, SETTINGS, workers=0, progress=False, shard=(2, N_SHARDS))
    assert merge(manifest, store, N_SHARDS).stored_rows == 19  # 9 clips x 2 folds + the video


def test_a_shard_that_stops_names_its_clips_and_resumes(tmp_path, monkeypatch):
    manifest, store = _manifest(tmp_path), tmp_path / "store"
    shard = next(i for i in range(1, N_SHARDS + 1) if
                 sum(shard_of(f"{k:05d}", N_SHARDS) == i for k in range(9)) >= 2)  # fmt: skip
    real_add, calls = pp.StoreWriter.add, []

    def add_then_fail(self, clip_id, record, **meta):
        calls.append(clip_id)
        if len(calls) == 2:
            raise OSError("No space left on device")
        return real_add(self, clip_id, record, **meta)

    monkeypatch.setattr(pp.StoreWriter, "add", add_then_fail)
    with pytest.raises(
        ShardFailed, match=r"No space left on device\) with \d+ clip\(s\) not done: "
    ) as err:
        preprocess(manifest, store, SETTINGS, workers=0, progress=False, shard=(shard, N_SHARDS))
    assert calls[1] in str(err.value)  # the clip it stopped at is named first
    listing = store / "dfew" / "parts" / f"shard-{shard:04d}-of-{N_SHARDS:04d}.failed.txt"
    assert calls[1] in listing.read_text().split()
    monkeypatch.setattr(pp.StoreWriter, "add", real_add)
    resumed = preprocess(
        manifest, store, SETTINGS, workers=0, progress=False, shard=(shard, N_SHARDS)
    )
    assert resumed.already >= 1 and not listing.exists()


def test_stride_store_keeps_every_kth_frame_and_loader_refuses_other_strides(tmp_path):
    manifest = _manifest(tmp_path)
    preprocess(manifest, tmp_path / "all", SETTINGS, workers=0, progress=False)
    strided = PreprocessSettings(short_side=32, frame_stride=2, framing="default", codec="jpeg")
    preprocess(manifest, tmp_path / "every2", strided, workers=0, progress=False)
    full, kept = ClipStore(tmp_path / "all"), ClipStore(tmp_path / "every2")
    ta = pd.read_parquet(tmp_path / "all" / "dfew.parquet").drop_duplicates("clip_id")
    tb = pd.read_parquet(tmp_path / "every2" / "dfew.parquet").drop_duplicates("clip_id")
    for a, b in zip(ta.itertuples(), tb.itertuples(), strict=True):
        assert b.n_frames == (a.n_frames + 1) // 2
        assert np.array_equal(kept.read_numpy(b.store_key), full.read_numpy(a.store_key)[::2])
    keys = tb["store_key"].tolist()
    assert read_stride(tmp_path / "every2", keys, 4) == 2
    assert read_stride(tmp_path / "all", ta["store_key"].tolist(), 4) == 4
    with pytest.raises(StoreError, match="keeps every 2-th frame .* cannot serve frame_stride 3"):
        read_stride(tmp_path / "every2", keys, 3)
    table = tb.reset_index(drop=True)
    with pytest.raises(StoreError, match="cannot serve frame_stride 3"):
        ClipDataset(
            tmp_path / "every2", table, "pretrain", num_frames=2, input_size=16, frame_stride=3
        )
    dataset = ClipDataset(
        tmp_path / "every2", table, "pretrain", num_frames=2, input_size=16, frame_stride=4
    )
    assert dataset.frame_stride == 2  # in stored frames: every 4th source frame
