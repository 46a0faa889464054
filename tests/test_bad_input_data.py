"""Copies of the datasets broken the ways real copies break: each is refused with a message naming
the file, or its bad rows are quarantined with the reason; never a silent wrong label."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from unilearn.cli import main as cli
from unilearn.data.native import DatasetLayoutError, SplitFileError, read_native
from unilearn.data.synth import ROOTS

DFEW_SPLITS = "EmoLabel_DataSplit"


def _copy(synth_tiny: Path, tmp_path: Path, dataset: str) -> Path:
    dst = tmp_path / ROOTS[dataset]
    shutil.copytree(synth_tiny / ROOTS[dataset], dst, symlinks=True)
    return dst


def _rows(result) -> set[tuple]:
    return {(r["clip_id"], r["fold"], r["split"], r["label"]) for r in result.rows}


def _shift_dfew_labels(root: Path, delta: int, only: str | None = None) -> None:
    for f in sorted((root / DFEW_SPLITS).rglob("set_*.csv")):
        if only and not str(f).endswith(only):
            continue
        head, *lines = f.read_text().splitlines()
        shifted = [f"{c},{int(y) + delta}" for c, y in (ln.split(",") for ln in lines if ln)]
        f.write_text("\n".join([head, *shifted]) + "\n")


# -- DFEW: 0-based labels ---------------------------------------------------------------------


def test_dfew_zero_based_labels_are_refused_naming_the_file(synth_tiny, tmp_path, capsys):
    root = _copy(synth_tiny, tmp_path, "dfew")
    _shift_dfew_labels(root, -1)
    first = root / DFEW_SPLITS / "train(single-labeled)/set_1.csv"
    with pytest.raises(
        SplitFileError, match=re.escape(f"{first}: 0-based labels: this file's labels span")
    ):
        read_native("dfew", root, progress=False)
    argv = ["manifest", "dfew", "--root", str(root), "--out", str(tmp_path / "m"), "--no-progress"]
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("unilearn manifest: bad input: DFEW: ") and "0-based labels" in err
    assert "--zero-based-labels" in err and "Traceback" not in err
    assert not (tmp_path / "m" / "dfew.parquet").exists()


def test_dfew_one_zero_based_file_among_one_based_ones_is_refused(synth_tiny, tmp_path):
    root = _copy(synth_tiny, tmp_path, "dfew")
    _shift_dfew_labels(root, -1, only="test(single-labeled)/set_4.csv")
    with pytest.raises(SplitFileError, match=r"test\(single-labeled\)/set_4\.csv: 0-based labels"):
        read_native("dfew", root, progress=False)


def test_dfew_zero_based_labels_read_shifted_only_when_told(synth_tiny, tmp_path):
    original = read_native("dfew", synth_tiny / "DFEW", progress=False)
    root = _copy(synth_tiny, tmp_path, "dfew")
    _shift_dfew_labels(root, -1)
    shifted = read_native("dfew", root, progress=False, zero_based_labels=True)
    assert shifted.rows_in == original.rows_in
    assert len(shifted.rows) == len(original.rows)
    assert _rows(shifted) == {(c, f, s, y) for c, f, s, y in _rows(original)}
    assert Counter(r["label_name"] for r in shifted.rows) == Counter(
        r["label_name"] for r in original.rows
    )


def test_dfew_zero_based_option_refuses_a_file_with_label_7(synth_tiny, tmp_path):
    root = _copy(synth_tiny, tmp_path, "dfew")
    with pytest.raises(SplitFileError, match=r"set_1\.csv: told the labels are 0-based"):
        read_native("dfew", root, progress=False, zero_based_labels=True)


def test_dfew_single_label_zero_among_one_to_seven_is_quarantined_not_shifted(synth_tiny, tmp_path):
    root = _copy(synth_tiny, tmp_path, "dfew")
    f = root / DFEW_SPLITS / "train(single-labeled)/set_2.csv"
    head, first, *rest = f.read_text().splitlines()
    f.write_text("\n".join([head, f"{first.split(',')[0]},0", *rest]) + "\n")
    original = read_native("dfew", synth_tiny / "DFEW", progress=False)
    r = read_native("dfew", root, progress=False)
    unknown = [q for q in r.quarantine if q["reason_code"] == "unknown_label"]
    assert len(unknown) == 1 and "has label '0'" in unknown[0]["reason"]
    assert r.rows_in == original.rows_in and len(r.rows) == len(original.rows) - 1


# -- DFEW: Clip/jpg_224 -----------------------------------------------------------------------


def test_dfew_jpg_224_frames_are_read_as_original_frames(synth_tiny, tmp_path):
    from unilearn.doctor.diagnose import diagnose

    root = _copy(synth_tiny, tmp_path, "dfew")
    (root / "Clip/jpg_256").rename(root / "Clip/jpg_224")
    original = read_native("dfew", synth_tiny / "DFEW", progress=False)
    r = read_native("dfew", root, progress=False)
    assert r.info["frames_dir"] == "Clip/jpg_224"
    assert _rows(r) == _rows(original) and all("/Clip/jpg_224/" in x["path"] for x in r.rows)
    _, findings, _ = diagnose("dfew", root, sample=4, face_clips=0, progress=False)
    assert any(f.code == "original_frames" and "Clip/jpg_224" in f.message for f in findings)


# -- FERV39K: label against the emotion folder ------------------------------------------------


def test_ferv39k_label_contradicting_its_folder_is_quarantined(synth_tiny, tmp_path):
    root = _copy(synth_tiny, tmp_path, "ferv39k")
    f = root / "4_setups/All_scenes/train_All.csv"
    lines = f.read_text().splitlines()
    k = next(i for i, ln in enumerate(lines) if "/Happy/" in ln)
    clip = lines[k].split()[0]
    lines[k] = f"{clip} Sad"
    f.write_text("\n".join(lines) + "\n")
    original = read_native("ferv39k", synth_tiny / "FERV39K", progress=False)
    r = read_native("ferv39k", root, progress=False)
    bad = [q for q in r.quarantine if q["reason_code"] == "label_contradicts_path"]
    assert [q["reason"] for q in bad] == [
        f"4_setups/All_scenes/train_All.csv:{k + 1}: clip {clip} is labelled Sad, but its path "
        "is under the Happy folder"
    ]
    assert r.rows_in == original.rows_in == len(r.rows) + len(r.quarantine)
    assert len(r.rows) == len(original.rows) - 1
    assert all(x["label_name"] == x["clip_id"].split("/")[1].lower() for x in r.rows)


# -- AffectNet: face boxes --------------------------------------------------------------------


def test_affectnet_zero_size_and_outside_face_boxes_are_quarantined(synth_tiny, tmp_path):
    root = _copy(synth_tiny, tmp_path, "affectnet")
    f = root / "Manually_Annotated_file_lists/training.csv"
    head, *lines = f.read_text().splitlines()
    rows = [ln.split(",") for ln in lines]
    kept_before = {r["clip_id"] for r in read_native("affectnet", root, progress=False).rows}
    usable = [i for i, r in enumerate(rows) if Path(r[0]).stem in kept_before][:3]
    a, b, c = usable
    rows[a][3] = "0"  # zero width
    rows[b][1], rows[b][2] = "5000", "5000"  # far outside the image
    rows[c][1] = str(-int(rows[c][3]) // 4)  # partly outside, most of the box still inside: kept
    f.write_text("\n".join([head, *(",".join(r) for r in rows)]) + "\n")
    r = read_native("affectnet", root, progress=False)
    bad = {q["clip_id"]: q["reason"] for q in r.quarantine if q["reason_code"] == "bad_face_box"}
    assert set(bad) == {Path(rows[a][0]).stem, Path(rows[b][0]).stem}
    assert bad[Path(rows[a][0]).stem].endswith(
        f"training.csv:{a + 2}: image {rows[a][0]}: face box (x {rows[a][1]}, y {rows[a][2]}, "
        f"width 0, height {rows[a][4]}) has zero size"
    )
    assert "lies outside the " in bad[Path(rows[b][0]).stem]
    assert "(0% of it inside)" in bad[Path(rows[b][0]).stem]
    assert {x["clip_id"] for x in r.rows} == kept_before - set(bad)
    assert r.rows_in == len(r.rows) + len(r.quarantine)


# -- VoxCeleb2 --------------------------------------------------------------------------------


def _vox(synth_tiny, tmp_path) -> tuple[Path, list[Path]]:
    root = _copy(synth_tiny, tmp_path, "voxceleb2")
    return root, sorted((root / "dev/mp4").rglob("*.mp4"))


def test_voxceleb2_image_named_mp4_is_not_a_video(synth_tiny, tmp_path):
    root, videos = _vox(synth_tiny, tmp_path)
    n_before = len(read_native("voxceleb2", root, progress=False).rows)
    cv2.imwrite(str(videos[0].with_suffix(".jpg")), np.full((32, 32, 3), 128, np.uint8))
    videos[0].with_suffix(".jpg").rename(videos[0])
    r = read_native("voxceleb2", root, progress=False)
    bad = [
        q for q in r.quarantine if q["clip_id"] == str(videos[0].relative_to(root / "dev/mp4"))[:-4]
    ]
    assert [q["reason_code"] for q in bad] == ["unreadable_video"]
    assert bad[0]["reason"].endswith("video is not a video but an image (jpeg data)")
    assert len(r.rows) == n_before - 1


def test_voxceleb2_misplaced_and_upper_case_mp4s_are_quarantined_with_the_reason(
    synth_tiny, tmp_path
):
    root, videos = _vox(synth_tiny, tmp_path)
    n_before = len(read_native("voxceleb2", root, progress=False).rows)
    videos[0].rename(videos[0].with_suffix(".MP4"))
    shutil.move(videos[1], videos[1].parent.parent / "stray.mp4")  # one level too shallow
    r = read_native("voxceleb2", root, progress=False)
    misplaced = sorted(q["reason"] for q in r.quarantine if q["reason_code"] == "misplaced_video")
    upper = str(videos[0].with_suffix(".MP4").relative_to(root))
    stray = str((videos[1].parent.parent / "stray.mp4").relative_to(root))
    assert misplaced == sorted(
        [
            f"{upper}: upper-case extension; rename it to .mp4 to use it",
            f"{stray}: not at dev/mp4/<speaker>/<youtube id>/<n>.mp4 (-1 level(s)); move it there to use it",
        ]
    )
    assert len(r.rows) == n_before - 2 and r.rows_in == len(r.rows) + len(r.quarantine)


def test_voxceleb2_tree_extracted_one_level_too_deep_is_an_error_naming_where(
    synth_tiny, tmp_path, capsys
):
    root, _ = _vox(synth_tiny, tmp_path)
    mp4 = root / "dev/mp4"
    (root / "vox2_dev").mkdir()
    shutil.move(mp4, root / "vox2_dev/mp4")
    mp4.mkdir()
    shutil.move(root / "vox2_dev/mp4", mp4 / "mp4")
    with pytest.raises(DatasetLayoutError, match="one level too deep") as err:
        read_native("voxceleb2", root, progress=False)
    assert f"under {mp4 / 'mp4'}" in str(err.value) and "1 level(s) deeper" in str(err.value)
    argv = ["manifest", "voxceleb2", "--root", str(root), "--out", str(tmp_path / "m")]
    assert cli(argv + ["--no-progress"]) == 2
    assert "one level too deep" in capsys.readouterr().err
    assert not (tmp_path / "m" / "voxceleb2.parquet").exists()


def test_voxceleb2_empty_video_folder_is_an_error_not_an_empty_manifest(synth_tiny, tmp_path):
    root, _ = _vox(synth_tiny, tmp_path)
    shutil.rmtree(root / "dev/mp4")
    (root / "dev/mp4").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"VoxCeleb2: found 0 rows under .*: no mp4 under"):
        read_native("voxceleb2", root, progress=False)


# -- any dataset: nothing found ---------------------------------------------------------------


def test_split_files_without_rows_are_an_error(synth_tiny, tmp_path):
    root = _copy(synth_tiny, tmp_path, "mafw")
    for f in (root / "split").rglob("*.txt"):
        f.write_text("")
    with pytest.raises(DatasetLayoutError, match="mafw: found 0 rows under .*list no rows"):
        read_native("mafw", root, progress=False)


def test_every_row_quarantined_is_exit_2_with_the_reason(synth_tiny, tmp_path, capsys):
    root = _copy(synth_tiny, tmp_path, "dfew")
    for clip in (root / "Clip/jpg_256").iterdir():
        shutil.rmtree(clip)
    out = tmp_path / "m"
    argv = ["manifest", "dfew", "--root", str(root), "--out", str(out), "--no-progress"]
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert "dfew: 0 of " in err and "every row was quarantined (most often missing_clip" in err
