"""`unilearn doctor`: a copy matching the official split statistics passes; each typical mistake
gets its own clear finding; the bundled synthetic data passes as what it is."""

import os
import shutil

import cv2
import numpy as np
import pytest
from official_tree import linked_copy, write_official_tree

from unilearn.cli import main as cli
from unilearn.data.synth_face import Pose, expression_at, render, render_background, sample_identity
from unilearn.doctor.diagnose import diagnose
from unilearn.doctor.media import FACE_CROPPED
from unilearn.doctor.official import official_counts

FAST = {"sample": 8, "face_clips": 4, "progress": False}


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """dataset -> a tree whose split files match the official statistics exactly."""
    base = tmp_path_factory.mktemp("official")
    return {d: write_official_tree(d, base / d) for d in ("dfew", "mafw", "ferv39k")}


def _codes(findings, severity="error"):
    return {f.code for f in findings if f.severity == severity}


def _error(findings, code):
    return next(f for f in findings if f.code == code and f.severity == "error")


def test_official_counts_are_package_data():
    counts = official_counts()
    assert (
        sum(counts["dfew"]["fold1/train"].values()) + sum(counts["dfew"]["fold1/test"].values())
        == 11_697
    )
    assert sum(sum(v.values()) for v in counts["ferv39k"].values()) == 38_935


@pytest.mark.parametrize("dataset", ["dfew", "mafw", "ferv39k"])
def test_copy_matching_the_official_split_passes(official, dataset, tmp_path):
    verdict, findings, _ = diagnose(dataset, official[dataset], **FAST)
    assert not _codes(findings), findings
    # MAFW's frames are full scenes that preprocess crops: no "faces cropped" check for it
    cropped = {"faces_cropped"} if dataset in FACE_CROPPED else set()
    assert {"matches_official_split", *cropped} <= _codes(findings, "ok")
    assert (
        verdict.endswith("OK (1 warning(s) below)") and "official" in verdict
    )  # 64x64 test frames warn
    if dataset != "dfew":
        return
    report = tmp_path / "report.md"
    assert (
        cli(
            [
                "doctor",
                dataset,
                "--root",
                str(official[dataset]),
                "--sample",
                "4",
                "--face-clips",
                "2",
                "--no-progress",
                "--report",
                str(report),
            ]
        )
        == 0
    )
    assert (
        report.read_text().startswith("# unilearn doctor") and "**Verdict:**" in report.read_text()
    )


def test_missing_clip_is_named(official, tmp_path):
    root = linked_copy(official["dfew"], tmp_path / "DFEW", "Clip/jpg_256", skip=("00042",))
    verdict, findings, _ = diagnose("dfew", root, **FAST)
    f = _error(findings, "missing_clip")
    assert "00042" in f.message and "1 missing clip(s)" in f.message
    assert "would NOT reproduce" in verdict
    assert (
        cli(
            [
                "doctor",
                "dfew",
                "--root",
                str(root),
                "--sample",
                "2",
                "--face-clips",
                "0",
                "--no-progress",
            ]
        )
        == 1
    )


def test_empty_folder_is_named(official, tmp_path):
    root = linked_copy(official["dfew"], tmp_path / "DFEW", "Clip/jpg_256", skip=("00077",))
    (root / "Clip/jpg_256/00077").mkdir()
    _, findings, _ = diagnose("dfew", root, **FAST)
    assert "00077" in _error(findings, "empty_clip").message


def _edit_label(path, clip, new):
    lines = path.read_text().split("\n")
    lines = [f"{clip},{new}" if ln.startswith(f"{clip},") else ln for ln in lines]
    path.write_text("\n".join(lines))


def test_relabelled_clip_is_found(official, tmp_path):
    root = linked_copy(official["dfew"], tmp_path / "DFEW", "Clip/jpg_256")
    splits = root / "EmoLabel_DataSplit"
    old = next(
        ln
        for ln in (splits / "test(single-labeled)/set_1.csv").read_text().split("\n")[1:]
        if ln.endswith(",1")
    )
    clip = old.split(",")[0]
    # relabelled consistently in every file: only the class counts can tell
    for f in splits.glob("*/set_*.csv"):
        _edit_label(f, clip, 2)
    _, findings, _ = diagnose("dfew", root, **FAST)
    f = _error(findings, "split_counts_differ")
    assert "relabelled from happy to sad" in f.message
    assert any(d.startswith("fold1/test: happy -1") for d in f.details)
    # relabelled in one file only: the clip id is named
    shutil.rmtree(splits)
    shutil.copytree(official["dfew"] / "EmoLabel_DataSplit", splits)
    _edit_label(root / "EmoLabel_DataSplit/test(single-labeled)/set_1.csv", clip, 2)
    _, findings, _ = diagnose("dfew", root, **FAST)
    assert clip in _error(findings, "label_conflict").message


def test_train_test_files_swapped_are_found(official, tmp_path):
    root = linked_copy(official["dfew"], tmp_path / "DFEW", "Clip/jpg_256")
    train = root / "EmoLabel_DataSplit/train(single-labeled)/set_2.csv"
    test = root / "EmoLabel_DataSplit/test(single-labeled)/set_2.csv"
    a, b = train.read_text(), test.read_text()
    train.write_text(b)
    test.write_text(a)
    _, findings, _ = diagnose("dfew", root, **FAST)
    assert "fold 2: " in _error(findings, "train_test_swapped").message
    assert {"tested_in_several_folds", "never_tested"} <= _codes(findings)


def test_fold_that_is_not_a_partition_is_found(official, tmp_path):
    root = linked_copy(official["mafw"], tmp_path / "MAFW", "data/frames")
    test3 = root / "split/single/no_caption/set_3/test.txt"
    test3.write_text(
        "\n".join(test3.read_text().strip().split("\n")[:-1]) + "\n"
    )  # one clip dropped
    _, findings, _ = diagnose("mafw", root, **FAST)
    assert {"never_tested", "fold_union_differs", "split_counts_differ"} <= _codes(findings)


def _dfew_copy(synth_tiny, tmp_path):
    # a real-looking DFEW (no synth.json beside it) built from the tiny synthetic one
    root = tmp_path / "DFEW"
    shutil.copytree(synth_tiny / "DFEW", root)
    return root


def test_16_frame_time_normalised_variant_is_found(synth_tiny, tmp_path):
    root = _dfew_copy(synth_tiny, tmp_path)
    variant = root / "Clip/clip_224x224_16f"
    (root / "Clip/jpg_256").rename(variant)
    for clip in variant.iterdir():
        frames = sorted(clip.iterdir())
        for i in range(len(frames), 16):
            os.link(frames[i % max(len(frames), 1)], clip / f"{i + 1:05d}.jpg") if frames else None
    _, findings, _ = diagnose("dfew", root, **FAST)
    f = _error(findings, "time_normalised_variant")
    assert "16-frame" in f.message and "jpg_256" in f.fix


def test_full_scene_frames_instead_of_face_crops_are_found(synth_tiny, tmp_path):
    root = _dfew_copy(synth_tiny, tmp_path)
    rng = np.random.default_rng(0)
    identity = sample_identity(rng)
    scene = render(
        render_background(240, 320, identity),
        identity,
        expression_at(
            "neutral",
            0.5,
            intensity=1,
            start=0,
            speed=1,
            phase=0,
            identity=identity,
            pose=Pose(200, 110, 18),
        ),
    )
    for frame in (root / "Clip/jpg_256").glob("*/*.jpg"):
        cv2.imwrite(str(frame), cv2.cvtColor(scene, cv2.COLOR_RGB2BGR))
    _, findings, _ = diagnose("dfew", root, **FAST)
    assert "full-scene" in _error(findings, "not_face_crops").message


def test_bundled_synthetic_data_passes_as_synthetic(synth_tiny, capsys):
    for dataset, top in (("dfew", "DFEW"), ("voxceleb2", "VoxCeleb2"), ("affectnet7", "AffectNet")):
        assert (
            cli(
                [
                    "doctor",
                    dataset,
                    "--root",
                    str(synth_tiny / top),
                    "--sample",
                    "4",
                    "--face-clips",
                    "2",
                    "--no-progress",
                ]
            )
            == 0
        )
        first = capsys.readouterr().out.split("\n")[0]
        assert "bundled synthetic data" in first and "OK" in first


def test_unreadable_layout_fails_with_the_expected_path(tmp_path, capsys):
    assert cli(["doctor", "ferv39k", "--root", str(tmp_path / "FERV39K"), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FERV39K: cannot be read") and str(tmp_path / "FERV39K") in out
