"""`unilearn preprocess`: faces found in raw media, each clip stored once, quarantine with reasons,
a second run does no work, a killed run resumes to the same store."""

from __future__ import annotations

import inspect
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _media import (
    astronaut,
    manifest_frame,
    manifest_row,
    moving_pattern,
    raw_face_video,
    write_frames,
    write_mp4,
)
from PIL import Image

from unilearn.data.preprocess import PreprocessSettings, preprocess
from unilearn.data.store import ClipStore, StoreWriter, read_journal

SETTINGS = PreprocessSettings(short_side=48, frame_stride=1, framing="default", codec="jpeg")


def _raw_manifest(tmp_path: Path) -> Path:
    """A photo, two raw videos with a face in a larger scene, one without a face, one corrupt."""
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(astronaut()).save(src / "astronaut.png")
    rows = [manifest_row("raw", "photo", src / "astronaut.png", "image", 0, 1)]
    for i, step in enumerate((4, 7)):
        path = write_mp4(src / f"raw{i}.mp4", raw_face_video(n_frames=16, step=step))
        rows.append(manifest_row("raw", f"video{i}", path, "video", 1, 16))
    empty = write_mp4(src / "noface.mp4", np.full((8, 120, 160, 3), 90, np.uint8))
    rows.append(manifest_row("raw", "noface", empty, "video", 2, 8))
    (src / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)
    rows.append(manifest_row("raw", "broken", src / "broken.mp4", "video", 3, 10))
    path = tmp_path / "raw.parquet"
    manifest_frame(rows).to_parquet(path)
    return path


def test_preprocess_finds_faces_in_a_photo_and_raw_videos_and_quarantines_the_rest(tmp_path):
    manifest = _raw_manifest(tmp_path)
    store_dir = tmp_path / "store"
    summary = preprocess(manifest, store_dir, SETTINGS, workers=0, progress=False)
    assert (summary.stored_now, summary.failed_now) == (3, 2)
    stored = pd.read_parquet(store_dir / "raw.parquet").set_index("clip_id")
    quarantined = pd.read_parquet(store_dir / "raw.quarantine.parquet").set_index("clip_id")
    assert set(stored.index) == {"photo", "video0", "video1"}
    assert quarantined.loc["noface", "reason"].startswith("no face")
    assert quarantined["reason_code"].to_dict() == {
        "noface": "no_face",
        "broken": "unreadable_media",
    }
    assert (
        quarantined.loc["broken", "reason"].startswith("unreadable media")
        and "broken.mp4" in quarantined.loc["broken", "reason"]
    )
    assert stored.loc["video0", "n_frames"] == 16 and stored.loc["photo", "n_frames"] == 1
    assert (stored["height"] == 48).all() and (stored["width"] == 48).all()
    # the stored photo is the astronaut's face: compare with the face region cropped by hand
    crop = ClipStore(store_dir).read_numpy(stored.loc["photo", "store_key"])[0]
    face = np.asarray(Image.fromarray(astronaut()[50:190, 155:295]).resize((48, 48)))
    other = np.asarray(Image.fromarray(astronaut()[300:440, 300:440]).resize((48, 48)))
    assert np.abs(crop.astype(int) - face).mean() < 0.5 * np.abs(crop.astype(int) - other).mean()


def _frames_manifest(tmp_path: Path, n_clips: int = 6, extra_rows: Sequence[dict] = ()) -> Path:
    rows = []
    for i in range(n_clips):
        n_frames = 5 + i % 8  # clips differ in length; a long manifest stays cheap
        folder = write_frames(tmp_path / "src" / f"{i:05d}", moving_pattern(n_frames, 64, seed=i))
        for fold in (1, 2, 3):  # listed in three folds, stored once
            rows.append(
                manifest_row("dfew", f"{i:05d}", folder, "frames", i % 7, n_frames, "train", fold)
            )
    (tmp_path / "src" / "empty").mkdir()
    rows.append(
        manifest_row("dfew", "empty", tmp_path / "src" / "empty", "frames", 0, 0, "test", 1)
    )
    rows += extra_rows
    path = tmp_path / "dfew.parquet"
    manifest_frame(rows).to_parquet(path)
    return path


def _store_contents(store_dir: Path, dataset: str) -> dict[str, np.ndarray]:
    table = pd.read_parquet(store_dir / f"{dataset}.parquet").drop_duplicates("clip_id")
    store = ClipStore(store_dir)
    return {row.clip_id: store.read_numpy(row.store_key) for row in table.itertuples()}


def test_each_clip_is_stored_once_and_a_second_run_does_no_work(tmp_path):
    manifest = _frames_manifest(tmp_path)
    first = preprocess(manifest, tmp_path / "store", SETTINGS, workers=0, progress=False)
    assert (first.rows, first.clips, first.stored_now, first.failed_now) == (19, 7, 6, 1)
    assert (first.stored_rows, first.quarantined_rows) == (18, 1)  # rows in = kept + quarantined
    table = pd.read_parquet(tmp_path / "store" / "dfew.parquet")
    assert table.groupby("clip_id")["store_key"].nunique().eq(1).all()
    assert table["store_key"].nunique() == 6
    shards = sorted(p.name for p in (tmp_path / "store" / "dfew").iterdir())
    second = preprocess(manifest, tmp_path / "store", SETTINGS, workers=0, progress=False)
    assert (second.already, second.stored_now, second.failed_now) == (7, 0, 0)
    assert (
        sorted(p.name for p in (tmp_path / "store" / "dfew").iterdir()) == shards
    )  # nothing written
    with pytest.raises(ValueError, match="other settings"):
        preprocess(
            manifest,
            tmp_path / "store",
            PreprocessSettings(short_side=32, frame_stride=1, framing="default", codec="jpeg"),
            workers=0,
            progress=False,
        )


def test_an_interrupted_run_resumes_to_the_same_store(tmp_path):
    manifest = _frames_manifest(tmp_path)
    preprocess(manifest, tmp_path / "full", SETTINGS, workers=0, progress=False)
    part = preprocess(manifest, tmp_path / "resumed", SETTINGS, workers=0, progress=False, limit=3)
    assert part.stored_now + part.failed_now == 3 and part.pending == 4
    rest = preprocess(manifest, tmp_path / "resumed", SETTINGS, workers=0, progress=False)
    assert rest.already == 3 and rest.stored_now + rest.failed_now == 4
    full, resumed = (
        _store_contents(tmp_path / "full", "dfew"),
        _store_contents(tmp_path / "resumed", "dfew"),
    )
    assert full.keys() == resumed.keys()
    assert all(np.array_equal(full[k], resumed[k]) for k in full)


@pytest.mark.slow
def test_a_killed_parallel_run_resumes_to_the_same_store(tmp_path):
    # More clips than a journal flush holds, so the first journal lines come by count, not by time;
    # the last clip reads a named pipe nobody writes to, so the run cannot finish before the kill.
    flush_every = inspect.signature(StoreWriter).parameters["flush_every"].default
    gate = tmp_path / "gate.png"
    os.mkfifo(gate)
    gate_row = manifest_row("dfew", "gate", gate, "image", 0, 1, "train", 1)
    manifest = _frames_manifest(tmp_path, n_clips=flush_every + 16, extra_rows=[gate_row])
    n_clips = flush_every + 18  # + the empty clip and the gate
    store = tmp_path / "store"
    cmd = [
        sys.executable,
        "-m",
        "unilearn",
        "preprocess",
        "--manifest",
        str(manifest),
        "--out",
        str(store),
        "--short-side",
        "48",
        "--workers",
        "2",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while not read_journal(store, "dfew") and proc.poll() is None:
            assert time.monotonic() < deadline, "no clip journaled within 120 s"
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before the kill (it should wait on the gate)"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole run, workers included, mid-write
        proc.wait()
    done_before = len(read_journal(store, "dfew"))
    assert 0 < done_before < n_clips
    gate.unlink()
    Image.fromarray(moving_pattern(1, 64, seed=99)[0]).save(gate)
    rerun = subprocess.run([*cmd, "--workers", "1"], check=True, capture_output=True, text=True)
    counts = re.search(r"(\d+) unique clips; (\d+) already in the store, (\d+) stored now, (\d+) failed now", rerun.stdout)  # fmt: skip
    clips, already, stored_now, failed_now = map(int, counts.groups())
    assert (clips, already) == (n_clips, done_before)
    assert stored_now + failed_now == n_clips - done_before  # the re-run does only what is missing
    preprocess(manifest, tmp_path / "reference", SETTINGS, workers=0, progress=False)
    resumed, reference = (
        _store_contents(store, "dfew"),
        _store_contents(tmp_path / "reference", "dfew"),
    )
    assert resumed.keys() == reference.keys() and len(resumed) == n_clips - 1
    assert all(np.array_equal(resumed[k], reference[k]) for k in resumed)
    quarantine = pd.read_parquet(store / "dfew.quarantine.parquet")
    assert quarantine["clip_id"].tolist() == ["empty"]


def test_preprocess_cli_prints_counts(tmp_path):
    manifest = _frames_manifest(tmp_path, n_clips=2)
    out = subprocess.run(
        [sys.executable, "-m", "unilearn", "preprocess", "--manifest", str(manifest), "--out", str(tmp_path / "s"), "--short-side", "32", "--workers", "0"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert "7 manifest rows, 3 unique clips" in out.stdout
    assert "2 stored now, 1 failed now" in out.stdout and "1 x unreadable media" in out.stdout


def test_mafw_full_scene_frames_are_detected_and_cropped_unless_marked_face_crops(tmp_path):
    # MAFW's data/frames are the clips' full frames (face boxes ship beside them): preprocess
    # finds the face and stores a square crop; a row marked face_cropped (the synthetic MAFW) is
    # only resized, as DFEW's face crops are.
    scene = write_frames(tmp_path / "src" / "00001", raw_face_video(n_frames=10, step=5))
    rows = [manifest_row("mafw", "00001", scene, "frames", 0, 10, "train", 1)]
    manifest_frame(rows).to_parquet(tmp_path / "mafw.parquet")
    preprocess(tmp_path / "mafw.parquet", tmp_path / "store", SETTINGS, workers=0, progress=False)
    cropped = pd.read_parquet(tmp_path / "store" / "mafw.parquet").iloc[0]
    assert (cropped["height"], cropped["width"]) == (48, 48)
    marked = manifest_frame(rows).assign(face_cropped=True)
    (tmp_path / "marked").mkdir()
    marked.to_parquet(tmp_path / "marked" / "mafw.parquet")
    preprocess(
        tmp_path / "marked" / "mafw.parquet",
        tmp_path / "resized",
        SETTINGS,
        workers=0,
        progress=False,
    )
    resized = pd.read_parquet(tmp_path / "resized" / "mafw.parquet").iloc[0]
    assert (resized["height"], resized["width"]) == (48, 85)  # 240 x 424 scaled to short side 48
