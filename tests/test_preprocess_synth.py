"""Preprocessing and loading the synthetic datasets of `unilearn synth --preset tiny`: faces found
in the raw scene videos, every manifest row stored or quarantined, loaders built from the store."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from _stores import eval_loader, finetune_loader, pretrain_loader

from unilearn.data.preprocess import PreprocessSettings, preprocess

SETTINGS = PreprocessSettings(short_side=40, frame_stride=1, framing="default", codec="jpeg")


def test_faces_are_found_in_the_synthetic_raw_videos(synth_tiny, tmp_path):
    videos = sorted((synth_tiny / "raw_videos").glob("*.mp4"))
    assert videos
    rows = [
        {"dataset": "raw", "clip_id": p.stem, "path": str(p), "media": "video", "label": -1, "label_name": "",
         "fold": None, "split": "test", "n_frames": 0, "source_file": "raw_videos"}
        for p in videos
    ]  # fmt: skip
    pd.DataFrame(rows).to_parquet(tmp_path / "raw.parquet")
    summary = preprocess(
        tmp_path / "raw.parquet", tmp_path / "store", SETTINGS, workers=0, progress=False
    )
    stored = set(pd.read_parquet(tmp_path / "store" / "raw.parquet")["clip_id"])
    quarantined = pd.read_parquet(tmp_path / "store" / "raw.quarantine.parquet").set_index(
        "clip_id"
    )["reason"]
    assert stored == {p.stem for p in videos if p.stem != "no_face"}
    assert list(quarantined.index) == ["no_face"] and quarantined["no_face"].startswith("no face")
    assert summary.stored_now == len(videos) - 1


@pytest.fixture(scope="module")
def synth_store(manifests_tiny, tmp_path_factory):
    store = tmp_path_factory.mktemp("synth_store")
    for manifest in sorted(manifests_tiny.glob("*.parquet")):
        if manifest.name.endswith(".quarantine.parquet"):
            continue
        summary = preprocess(manifest, store, SETTINGS, workers=0, progress=False)
        rows = pd.read_parquet(manifest)
        assert summary.stored_rows + summary.quarantined_rows == len(rows)  # nothing lost
    return store


def test_every_synthetic_manifest_row_is_stored_or_quarantined_once(synth_store, manifests_tiny):
    for manifest in sorted(manifests_tiny.glob("*.parquet")):
        if manifest.name.endswith(".quarantine.parquet"):
            continue
        stored = pd.read_parquet(synth_store / manifest.name)
        assert stored.groupby("clip_id")["store_key"].nunique().eq(1).all()
        assert (stored["n_frames"] >= 1).all() and (
            stored[["height", "width"]].min(axis=1) == 40
        ).all()


def test_loaders_run_on_the_synthetic_store(synth_store):
    kw = {"num_frames": 4, "input_size": 32, "batch_size": 2, "num_workers": 0}
    joint = finetune_loader(synth_store, "dfew", "affectnet7", fold=1, seed=0, **kw)
    tasks = {b["task"] for b in joint}
    assert tasks == {"dfer", "sfer"}
    for batch in eval_loader(synth_store, "ferv39k", n_clips=2, **kw):
        assert batch["x"].shape[1:] == (2, 3, 4, 32, 32) and batch["x"].dtype == torch.uint8
        assert ((batch["y"] >= 0) & (batch["y"] < 7)).all()
    modalities = {
        b["modality"] for b in pretrain_loader(synth_store, "affectnet", "voxceleb2", seed=0, **kw)
    }
    assert modalities == {"image", "video"}
