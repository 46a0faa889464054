"""The doctor's verdict names each problem in words (swapped files, relabelled clips, 0-based
labels, missing clips with a count), in the dataset's own file names; the report lists every
affected clip."""

from __future__ import annotations

import pytest
from official_tree import linked_copy, write_official_tree

from unilearn.cli import main as cli
from unilearn.doctor.diagnose import diagnose

FAST = {"sample": 4, "face_clips": 0, "progress": False}
MEDIA = {"dfew": "Clip/jpg_256", "mafw": "data/frames", "ferv39k": "2_ClipsforFaceCrop"}


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    base = tmp_path_factory.mktemp("official_bad")
    return {d: write_official_tree(d, base / d) for d in ("dfew", "ferv39k")}


def _swap(a, b) -> None:
    ta, tb = a.read_text(), b.read_text()
    a.write_text(tb)
    b.write_text(ta)


def test_swapped_dfew_fold_is_named_in_the_verdict(official, tmp_path):
    root = linked_copy(official["dfew"], tmp_path / "DFEW", MEDIA["dfew"])
    splits = root / "EmoLabel_DataSplit"
    _swap(splits / "train(single-labeled)/set_3.csv", splits / "test(single-labeled)/set_3.csv")
    verdict, findings, _ = diagnose("dfew", root, **FAST)
    assert "would NOT reproduce" in verdict
    assert (
        "fold 3: train(single-labeled)/set_3.csv and test(single-labeled)/set_3.csv swapped"
        in verdict
    )
    assert "split files disagree: " in verdict and "clips are test in more than one fold" in verdict
    assert "fold3." not in verdict


def test_swapped_ferv39k_files_are_named_with_ferv39k_file_names(official, tmp_path):
    root = linked_copy(official["ferv39k"], tmp_path / "FERV39K", MEDIA["ferv39k"])
    setups = root / "4_setups/All_scenes"
    _swap(setups / "train_All.csv", setups / "test_All.csv")
    verdict, findings, _ = diagnose("ferv39k", root, **FAST)
    assert "train_All.csv and test_All.csv swapped" in verdict and "official." not in verdict
    swapped = next(f for f in findings if f.code == "train_test_swapped")
    assert (
        swapped.fix == "swap train_All.csv and test_All.csv back (train_All.csv is the larger one)"
    )
    assert "single-labeled" not in swapped.fix + swapped.message


def test_relabelled_clip_is_named_in_the_verdict(official, tmp_path):
    root = linked_copy(official["dfew"], tmp_path / "DFEW", MEDIA["dfew"])
    splits = root / "EmoLabel_DataSplit"
    test1 = splits / "test(single-labeled)/set_1.csv"
    clip = next(ln for ln in test1.read_text().split("\n")[1:] if ln.endswith(",1")).split(",")[0]
    for f in splits.glob("*/set_*.csv"):
        lines = f.read_text().split("\n")
        f.write_text("\n".join(f"{clip},2" if ln.startswith(f"{clip},") else ln for ln in lines))
    verdict, _, _ = diagnose("dfew", root, **FAST)
    assert "1 clip(s) relabelled from happy to sad" in verdict


def test_zero_based_labels_are_named_in_the_verdict(official, tmp_path, capsys):
    root = linked_copy(official["dfew"], tmp_path / "DFEW", MEDIA["dfew"])
    for f in (root / "EmoLabel_DataSplit").glob("*/set_*.csv"):
        head, *lines = f.read_text().strip().split("\n")
        f.write_text(
            "\n".join([head, *(f"{c},{int(y) - 1}" for c, y in (x.split(",") for x in lines))])
        )
    verdict, findings, _ = diagnose("dfew", root, **FAST)
    assert verdict.startswith("DFEW: cannot be read") and "0-based labels" in verdict
    assert cli(["doctor", "dfew", "--root", str(root), "--no-progress", "--face-clips", "0"]) == 1
    assert "0-based labels" in capsys.readouterr().out.split("\n")[0]


def test_every_missing_clip_is_counted_and_listed_in_the_report(official, tmp_path, capsys):
    clips = sorted(p.name for p in (official["dfew"] / MEDIA["dfew"]).iterdir())
    gone = tuple(clips[5 : 5 + 117])
    root = linked_copy(official["dfew"], tmp_path / "DFEW", MEDIA["dfew"], skip=gone)
    report = tmp_path / "doctor.md"
    argv = ["doctor", "dfew", "--root", str(root), "--sample", "2", "--face-clips", "0",
            "--no-progress", "--report", str(report)]  # fmt: skip
    assert cli(argv) == 1
    out = capsys.readouterr().out
    verdict = out.split("\n")[0]
    assert "117 missing clip(s)" in verdict
    assert f"{117 * 5 - 5} more in the report" in out  # each clip is listed in 5 split files
    text = report.read_text()
    missing_lines = [ln for ln in text.split("\n") if "has no frame folder" in ln]
    named = {c for c in gone if any(f"clip {c} " in ln for ln in missing_lines)}
    assert named == set(gone)


def test_label_against_its_emotion_folder_is_named_in_the_verdict(official, tmp_path):
    root = linked_copy(official["ferv39k"], tmp_path / "FERV39K", MEDIA["ferv39k"])
    train = root / "4_setups/All_scenes/train_All.csv"
    lines = train.read_text().split("\n")
    k = next(i for i, ln in enumerate(lines) if "/Angry/" in ln)
    lines[k] = lines[k].rsplit(" ", 1)[0] + " Fear"
    train.write_text("\n".join(lines))
    verdict, _, _ = diagnose("ferv39k", root, **FAST)
    assert "1 clip(s) labelled against their emotion folder" in verdict
