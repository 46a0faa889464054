"""`unilearn predict`: raw scene videos, images, frame folders, corrupt files and a video without a
face each get a row (predictions or a reason); the face clip of a raw video is the one the clip
store holds (same code path, bit for bit); imported VideoMAE checkpoints run with --model/--labels;
timelines and their plots. A random tiny model is enough here (no training); the trained-model
agreement with `unilearn evaluate` is in test_predict_agreement.py."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from unilearn.catalogue import get_label_set
from unilearn.cli import main as cli
from unilearn.config import MoAEConfig
from unilearn.data.decode import read_media
from unilearn.data.preprocess import PreprocessSettings, preprocess
from unilearn.data.store import ClipStore
from unilearn.models import create_model, save_checkpoint
from unilearn.models.checkpoint import CheckpointError
from unilearn.predict.inputs import discover_inputs
from unilearn.predict.media import MediaFrames
from unilearn.predict.model import evaluation_model, load_inference_model
from unilearn.predict.pipeline import PredictOptions, prepare_input
from unilearn.predict.timeline import parse_window_stride, timeline_windows

SETTINGS = PreprocessSettings(short_side=40, frame_stride=1, framing="default", codec="jpeg")
DFEW = list(get_label_set("dfew").classes)
AFFECTNET7 = list(get_label_set("affectnet7").classes)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random UniLearn-tiny (DFER + SFER heads) saved as `unilearn finetune` saves one, with
    the store settings in its meta."""
    torch.manual_seed(0)
    model = create_model(
        "unilearn_tiny_patch16_64", img_size=32, num_frames=4, moae=MoAEConfig(n_experts=2)
    )
    path = tmp_path_factory.mktemp("predict_ckpt") / "checkpoint.pt"
    meta = {"labels": {"dfer": DFEW, "sfer": AFFECTNET7}, "frame_stride": 2,
            "config_hash": "c0ffee", "preprocess": asdict(SETTINGS)}  # fmt: skip
    save_checkpoint(path, model, meta)
    return path


@pytest.fixture(scope="module")
def raw(synth_tiny) -> dict[str, Path]:
    folder = synth_tiny / "raw_videos"
    scene = sorted(folder.glob("scene_*.mp4"))[0]
    image = sorted((synth_tiny / "AffectNet" / "Manually_Annotated_Images").rglob("*.jpg"))[0]
    frames = sorted((synth_tiny / "DFEW" / "Clip" / "jpg_256").iterdir())[0]
    return {"scene": scene, "no_face": folder / "no_face.mp4", "image": image, "frames": frames}


def _run(args: list) -> int:
    return cli(["predict", *map(str, args), "--no-progress"])


def test_raw_video_and_image_get_predictions_corrupt_and_faceless_get_reasons(
    tiny_checkpoint, raw, tmp_path, capsys
):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    out = tmp_path / "pred.csv"
    rc = _run([tiny_checkpoint, raw["scene"], raw["image"], corrupt, raw["no_face"], "--out", out])
    assert rc == 0  # something was processed
    table = pd.read_csv(out, keep_default_na=False).set_index("input")
    scene, image = table.loc[str(raw["scene"])], table.loc[str(raw["image"])]
    assert scene["status"] == "ok" and scene["kind"] == "video" and scene["head"] == "dfer"
    assert scene["crop"] == "face" and scene["face_detections"] > 0 and scene["n_clips"] == 2
    assert image["status"] == "ok" and image["kind"] == "image" and image["head"] == "sfer"
    for row in (scene, image):
        probs = row[[c for c in table.columns if c.startswith("prob_")]]
        probs = pd.to_numeric(probs, errors="coerce").dropna()
        assert len(probs) == 7 and probs.sum() == pytest.approx(1.0, abs=1e-5)
        assert row["top_label"] == probs.idxmax().removeprefix("prob_")
        assert row["checkpoint_sha256"] and row["config_hash"] == "c0ffee"
    bad = table.loc[str(corrupt)]
    assert bad["status"] == "failed" and bad["reason_code"] == "unreadable_media"
    assert str(corrupt) in bad["reason"]
    faceless = table.loc[str(raw["no_face"])]
    assert faceless["status"] == "failed" and faceless["reason_code"] == "no_face"
    assert "no face" in faceless["reason"]
    printed = capsys.readouterr().out
    assert "4 inputs: 2 ok, 2 failed" in printed and "no_face 1" in printed


def test_exit_status_is_nonzero_only_when_nothing_could_be_processed(
    tiny_checkpoint, raw, tmp_path
):
    unsupported = tmp_path / "notes.txt"
    unsupported.write_text("not media")
    out = tmp_path / "pred.parquet"
    assert _run([tiny_checkpoint, raw["no_face"], unsupported, tmp_path / "missing.mp4",
                 "--out", out]) == 1  # fmt: skip
    table = pd.read_parquet(out)
    assert list(table["status"]) == ["failed"] * 3
    assert list(table["reason_code"]) == ["no_face", "unsupported_format", "unreadable_media"]
    assert _run([tiny_checkpoint, raw["image"], "--out", out]) == 0
    assert _run([tmp_path / "missing.pt", raw["image"], "--out", out]) == 2  # unusable checkpoint


def test_frame_folders_images_and_videos_are_told_apart(synth_tiny, tmp_path):
    items = discover_inputs([synth_tiny / "DFEW" / "Clip" / "jpg_256"])
    assert items and {i.kind for i in items} == {"frames"}  # 00001.jpg, 00002.jpg, ...
    photos = discover_inputs([synth_tiny / "AffectNet" / "Manually_Annotated_Images"])
    assert photos and {i.kind for i in photos} == {"image"}  # hash-named, one per folder
    videos = discover_inputs([synth_tiny / "raw_videos"])  # index.csv beside them is no input
    assert {Path(i.path).name for i in videos} == {"no_face.mp4"} | {
        p.name for p in (synth_tiny / "raw_videos").glob("scene_*.mp4")
    }
    folder = tmp_path / "shots"
    folder.mkdir()
    for name in ("a_001.jpg", "b_002.jpg"):
        (folder / name).write_bytes(b"")
    assert [i.kind for i in discover_inputs([folder])] == ["image", "image"]
    assert [i.kind for i in discover_inputs([folder], folders="frames")] == ["frames"]


def test_lazy_media_decodes_the_same_pixels_as_read_media(raw):
    for path, kind in ((raw["scene"], "video"), (raw["frames"], "frames"), (raw["image"], "image")):
        full = read_media(path, kind)
        lazy = MediaFrames(path, kind, chunk=3)
        lazy.plan(range(0, len(full), 2))
        assert len(lazy) == len(full)
        assert all(np.array_equal(lazy[t], full[t]) for t in range(0, len(full), 2))
        picked = [len(full) - 1, 0, 1][: len(full)]
        assert np.array_equal(lazy[picked], full[picked])


def test_raw_video_face_clip_is_the_stored_clip_bit_for_bit(tiny_checkpoint, raw, tmp_path):
    """Predict's detect -> track -> crop -> JPEG path gives the pixels `unilearn preprocess`
    stores for the same video with the same settings."""
    rows = [{"dataset": "raw", "clip_id": "scene", "path": str(raw["scene"]), "media": "video",
             "label": -1, "label_name": "", "fold": None, "split": "test", "n_frames": 0,
             "source_file": "test"}]  # fmt: skip
    pd.DataFrame(rows).to_parquet(tmp_path / "raw.parquet")
    preprocess(tmp_path / "raw.parquet", tmp_path / "store", SETTINGS, workers=0, progress=False)
    key = pd.read_parquet(tmp_path / "store" / "raw.parquet")["store_key"].iloc[0]

    spec = load_inference_model(tiny_checkpoint)
    assert spec.settings == SETTINGS and spec.settings_source == "checkpoint meta"
    item = discover_inputs([raw["scene"]])[0]
    prepared = prepare_input(
        0,
        item,
        spec,
        PredictOptions(n_clips=2, crop="detect", timeline=True, window_stride=None, fps=None),
    )
    assert prepared.ok, prepared.reason
    keep = sorted(prepared.position)
    stored = ClipStore(tmp_path / "store").read_numpy(key, keep)
    assert np.array_equal(prepared.frames, stored)


def test_imported_videomae_checkpoint_runs_with_model_and_labels(raw, tmp_path, capsys):
    from test_models_checkpoint import save_like_videomae, videomae_finetune_state_dict

    save_like_videomae(tmp_path / "videomae.pth", videomae_finetune_state_dict())
    out = tmp_path / "pred.parquet"
    assert _run([tmp_path / "videomae.pth", raw["scene"], "--out", out]) == 2  # no meta: say so
    assert "--model" in capsys.readouterr().err
    rc = _run([tmp_path / "videomae.pth", raw["scene"], raw["frames"], "--crop", "auto",
               "--model", "vit_tiny_patch16_64", "--labels", "dfew", "--out", out])  # fmt: skip
    assert rc == 0
    table = pd.read_parquet(out)
    assert list(table["status"]) == ["ok", "ok"] and set(table["head"]) == {"dfer"}
    assert set(table["model"]) == {"vit_tiny_patch16_64"} and set(table["config_hash"]) == {""}
    assert [c.removeprefix("prob_") for c in table.columns if c.startswith("prob_")] == DFEW
    assert list(table["crop"]) == ["face", "resize"]  # the DFEW-style crop fills its frame


def test_authors_checkpoint_runs_with_model_and_labels(raw, tmp_path):
    from test_models_authors import authors_finetuned_state_dict, save_like_authors

    theirs = authors_finetuned_state_dict()
    ferv = list(get_label_set("ferv39k").classes)
    theirs["head.video.weight"] = theirs["head.video.weight"][: len(ferv)]
    theirs["head.video.bias"] = theirs["head.video.bias"][: len(ferv)]
    save_like_authors(tmp_path / "checkpoint-best.pth", theirs)
    spec = load_inference_model(tmp_path / "checkpoint-best.pth",
                                model_name="unilearn_tiny_patch16_64", labels="ferv39k")  # fmt: skip
    # expert count and MoAE blocks come from their weights, the image head is AffectNet-7's
    assert spec.labels == {"dfer": ferv, "sfer": AFFECTNET7} and spec.imported
    assert len(spec.model.blocks[3].moae.experts) == 4
    torch.testing.assert_close(spec.model.head_sfer.weight, theirs["head.image.weight"])
    out = tmp_path / "pred.parquet"
    rc = _run([tmp_path / "checkpoint-best.pth", raw["scene"], raw["image"], "--out", out,
               "--model", "unilearn_tiny_patch16_64", "--labels", "ferv39k"])  # fmt: skip
    assert rc == 0
    assert list(pd.read_parquet(out)["head"]) == ["dfer", "sfer"]
    # `unilearn evaluate --model ... --labels ...` builds the same model, with a meta like ours
    model, meta = evaluation_model(tmp_path / "checkpoint-best.pth", "unilearn_tiny_patch16_64",
                                   "ferv39k")  # fmt: skip
    assert meta["labels"] == spec.labels and (meta["num_frames"], meta["input_size"]) == (8, 64)
    torch.testing.assert_close(model.head.weight, spec.model.head.weight)
    with pytest.raises(CheckpointError, match="--model needs --labels"):
        evaluation_model(tmp_path / "checkpoint-best.pth", "unilearn_tiny_patch16_64")
    with pytest.raises(CheckpointError, match="video head has 7 classes, but --labels names 11"):
        load_inference_model(tmp_path / "checkpoint-best.pth",
                             model_name="unilearn_tiny_patch16_64", labels="mafw")  # fmt: skip
    with pytest.raises(CheckpointError, match="cannot run as vit_tiny_patch16_64"):
        load_inference_model(tmp_path / "checkpoint-best.pth",
                             model_name="vit_tiny_patch16_64", labels="ferv39k")  # fmt: skip


def test_timeline_rows_cover_the_video_and_plot_is_written(tiny_checkpoint, raw, tmp_path):
    out = tmp_path / "pred.parquet"
    rc = _run([tiny_checkpoint, raw["scene"], raw["image"], "--window-stride", "4", "--plot",
               "--out", out])  # fmt: skip
    assert rc == 0
    timeline = pd.read_parquet(tmp_path / "pred.timeline.parquet")
    n = len(read_media(raw["scene"], "video"))
    expected = timeline_windows(n, num_frames=4, frame_stride=2, step=4)
    assert set(timeline["input"]) == {str(raw["scene"])}  # images have no timeline
    assert list(timeline["start_frame"]) == [w.start for w in expected]
    assert list(timeline["end_frame"]) == [w.end for w in expected]
    assert timeline["end_frame"].iloc[-1] == n - 1 and timeline["start_frame"].iloc[0] == 0
    assert timeline["start_s"].to_numpy() == pytest.approx(timeline["start_frame"] / 25.0)
    probs = timeline[[f"prob_{c}" for c in DFEW]].to_numpy()
    assert probs.sum(1) == pytest.approx(1.0, abs=1e-5)
    png = tmp_path / "pred.timeline" / f"{raw['scene'].name}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_window_stride_in_frames_or_seconds():
    assert parse_window_stride("12").unit == "frames"
    assert (
        parse_window_stride("0.5s").value == 0.5 and parse_window_stride("2 sec").unit == "seconds"
    )
    for bad in ("0", "-1", "1.5", "fast"):
        with pytest.raises(ValueError, match="window-stride"):
            parse_window_stride(bad)
    windows = timeline_windows(5, num_frames=4, frame_stride=2, step=3)  # shorter than a window
    assert [w.frames for w in windows] == [(0, 2, 4, 4)]


def test_a_model_of_an_authors_mtcnn_store_predicts_on_the_same_framing(raw, tmp_path):
    """A MAFW model's store was framed with the authors' per-frame MTCNN crop: predict frames
    its input the same way (the clip frames where MTCNN finds a face are the stored ones)."""
    settings = PreprocessSettings(
        short_side=40, framing="authors_mtcnn", frame_stride=1, codec="jpeg"
    )
    rows = [{"dataset": "mafw", "clip_id": "scene", "path": str(raw["scene"]), "media": "video",
             "label": -1, "label_name": "", "fold": None, "split": "test", "n_frames": 0,
             "source_file": "test"}]  # fmt: skip
    pd.DataFrame(rows).to_parquet(tmp_path / "mafw.parquet")
    preprocess(tmp_path / "mafw.parquet", tmp_path / "store", settings, workers=0, progress=False)
    key = pd.read_parquet(tmp_path / "store" / "mafw.parquet")["store_key"].iloc[0]
    torch.manual_seed(0)
    model = create_model(
        "unilearn_tiny_patch16_64", img_size=32, num_frames=4, moae=MoAEConfig(n_experts=2)
    )
    meta = {"labels": {"dfer": DFEW, "sfer": AFFECTNET7}, "frame_stride": 2,
            "preprocess": asdict(settings)}  # fmt: skip
    save_checkpoint(tmp_path / "checkpoint.pt", model, meta)
    spec = load_inference_model(tmp_path / "checkpoint.pt")
    assert spec.settings.framing == "authors_mtcnn"
    item = discover_inputs([raw["scene"]])[0]
    prepared = prepare_input(
        0,
        item,
        spec,
        PredictOptions(n_clips=2, crop="detect", timeline=False, window_stride=None, fps=None),
    )
    assert prepared.ok, prepared.reason
    keep = sorted(prepared.position)
    assert prepared.frames.shape == (len(keep), 40, 40, 3)
    assert prepared.face_detections == len(keep)  # MTCNN finds the scene's face in every frame
    stored = ClipStore(tmp_path / "store").read_numpy(key, keep)
    assert np.array_equal(prepared.frames, stored)
