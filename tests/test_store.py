"""The clip store: records round-trip, keys name shard and offset, a torn write is never read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _media import moving_pattern

from unilearn.data.store import ClipStore, StoreError, StoreWriter, encode_clip, read_journal


def test_clips_round_trip_with_random_temporal_access(tmp_path):
    clips = [moving_pattern(5 + i, 40, seed=i) for i in range(5)]
    with StoreWriter(tmp_path, "dfew", max_shard_bytes=20_000) as writer:  # forces several shards
        keys = [
            writer.add(str(i), encode_clip(c, quality=95), n_frames=len(c))
            for i, c in enumerate(clips)
        ]
    assert len({k.split(":")[0] for k in keys}) > 1
    store = ClipStore(tmp_path)
    for key, clip in zip(keys, clips):
        assert store.num_frames(key) == len(clip)
        idx = [len(clip) - 1, 0, 2, 2]
        frames = store.read(key, idx)
        assert frames.shape == (4, 3, 40, 40) and frames.dtype == torch.uint8
        assert np.abs(frames.permute(0, 2, 3, 1).numpy().astype(int) - clip[idx]).mean() < 3
    journal = read_journal(tmp_path, "dfew")
    assert [journal[str(i)]["store_key"] for i in range(5)] == keys


def test_bad_keys_and_frames_raise_store_errors_naming_the_key(tmp_path):
    with StoreWriter(tmp_path, "mafw") as writer:
        key = writer.add("a", encode_clip(moving_pattern(3, 16)))
    store = ClipStore(tmp_path)
    with pytest.raises(StoreError, match="frame 3 requested"):
        store.read(key, [3])
    with pytest.raises(StoreError, match="not of the form"):
        store.read("mafw/clip.jpg", [0])
    with pytest.raises(StoreError, match="no clip record"):
        store.read(key.replace(":0", ":7"), [0])


def test_a_torn_write_is_never_listed_and_later_runs_use_new_shards(tmp_path):
    writer = StoreWriter(tmp_path, "dfew", flush_every=1)
    writer.add("kept", encode_clip(moving_pattern(3, 16)))
    writer._shard.write(b"ULC1 half a record")  # a kill mid-write leaves a torn tail...
    with open(writer.dir / "journal-00001.jsonl", "ab") as f:
        f.write(b'{"clip_id": "torn", "store_k')  # ...and maybe a torn journal line
    writer._close_files()
    assert set(read_journal(tmp_path, "dfew")) == {"kept"}
    with StoreWriter(tmp_path, "dfew") as again:
        key = again.add("next", encode_clip(moving_pattern(3, 16)))
    assert key.startswith("dfew/shard-00002.ulc:")
    assert ClipStore(tmp_path).num_frames(key) == 3


def test_two_writers_at_once_take_separate_shards_and_journals(tmp_path, monkeypatch):
    first, second = StoreWriter(tmp_path, "voxceleb2"), StoreWriter(tmp_path, "voxceleb2")
    clip = encode_clip(moving_pattern(3, 16))
    key_a = first.add("a", clip)
    # the second looked for the highest shard number before the first created its file (the race
    # in which the second writer used to die on FileExistsError)
    monkeypatch.setattr(Path, "iterdir", lambda self: iter(()))
    key_b = second.add("b", clip)
    monkeypatch.undo()
    first.close()
    second.close()
    assert key_a.split(":")[0] != key_b.split(":")[0]
    assert {k: v["store_key"] for k, v in read_journal(tmp_path, "voxceleb2").items()} == {
        "a": key_a,
        "b": key_b,
    }
    store = ClipStore(tmp_path)
    assert store.record_bytes(key_a) == store.record_bytes(key_b) == clip


def _face_video(n_frames: int, size: int = 48) -> np.ndarray:
    """The astronaut's head drifting and zooming: texture and motion as a face video has."""
    import cv2
    from _media import astronaut

    face = astronaut()[30:230, 150:300]
    frames = []
    for t in range(n_frames):
        m = cv2.getRotationMatrix2D((75 + 3 * np.sin(t / 5), 100), 2 * np.sin(t / 7), 1 + t / 200)
        warped = cv2.warpAffine(face, m, (150, 200), borderMode=cv2.BORDER_REFLECT)[25:175]
        frames.append(cv2.resize(warped, (size, size), interpolation=cv2.INTER_AREA))
    return np.stack(frames)


def test_h264_records_keep_every_frame_and_read_any_of_them_alone(tmp_path):
    """An H.264 record decodes each group alone: frames read in any order, from any start, are
    those of decoding the whole clip; they are within JPEG's error of the source; the record is
    smaller than JPEG's of every 4th frame (what it replaces for a stride-4 loader)."""
    from unilearn.data import h264

    clip = _face_video(2 * h264.PHASES * h264.GOP + 5)  # 2 whole groups per phase, a short third
    record = encode_clip(clip, codec="h264")
    assert len(record) < len(encode_clip(clip[::4], quality=90))
    with StoreWriter(tmp_path, "voxceleb2") as writer:
        key = writer.add("a", record)
        jpeg_key = writer.add("b", encode_clip(clip, quality=90))
    store = ClipStore(tmp_path)
    info = store.info(key)
    assert (info.codec, info.group, info.phases) == ("h264", h264.GOP, h264.PHASES)
    assert store.num_frames(key) == len(clip)
    whole = store.read_numpy(key)
    jpeg = store.read_numpy(jpeg_key)
    assert np.abs(whole.astype(int) - clip).mean() <= np.abs(jpeg.astype(int) - clip).mean() + 1.0
    for start in (0, 1, 2, 3, 13, len(clip) - 13):  # any start, not only multiples of 4
        idx = [start + 4 * i for i in range(4)]  # one phase stream
        assert np.array_equal(store.read_numpy(key, idx), whole[idx]), start
    mixed = [len(clip) - 1, 0, 0, 5, 6, 7, 33]  # several phases, repeats, any order
    assert np.array_equal(store.read_numpy(key, mixed), whole[mixed])


def test_damaged_h264_records_are_store_errors_naming_the_key(tmp_path):
    from unilearn.data import h264

    clip = _face_video(h264.PHASES * h264.GOP)
    record = bytearray(encode_clip(clip, codec="h264"))
    table = 16 + 4 * (h264.n_chunks(len(clip), h264.GOP, h264.PHASES) + 1)
    with StoreWriter(tmp_path, "voxceleb2") as writer:
        whole = writer.add("whole", bytes(record))
        record[table + 40 : table + 400] = bytes(360)  # phase 0's frame data zeroed
        damaged = writer.add("damaged", bytes(record))
        cut = writer.add("cut", bytes(record[:-50]))
    store = ClipStore(tmp_path)
    store.read_numpy(whole, [0, len(clip) - 1])
    store.read_numpy(damaged, [1])  # another phase stream: its groups are whole
    with pytest.raises(StoreError, match=rf"{damaged}.*phase 0 group 0"):
        store.read_numpy(damaged, [4])
    with pytest.raises(StoreError, match=rf"{cut}': record truncated"):  # the shard's last record
        store.read_numpy(cut, [0])
    with pytest.raises(ValueError, match="even frame size"):
        encode_clip(np.zeros((2, 15, 16, 3), np.uint8), codec="h264")
