"""`unilearn manifest`: synth -> manifest for every dataset; counts equal the split files; the
planted broken inputs land in quarantine with the right reason; rows in = kept + quarantined."""

import shutil
from collections import Counter

import pandas as pd
import pytest

from unilearn.catalogue import get_label_set
from unilearn.cli import main as cli
from unilearn.data.native import READERS, DatasetLayoutError, SplitFileError, read_native
from unilearn.data.synth import ROOTS


def _split_file_counts(root, dataset):
    """(fold, split, native label) -> rows, parsed straight from the split files."""
    counts = Counter()
    if dataset == "dfew":
        for fold in range(1, 6):
            for split in ("train", "test"):
                lines = (
                    (root / f"EmoLabel_DataSplit/{split}(single-labeled)/set_{fold}.csv")
                    .read_text()
                    .split()
                )
                counts.update((fold, split, ln.split(",")[1]) for ln in lines[1:])
    elif dataset == "mafw":
        for fold in range(1, 6):
            for split in ("train", "test"):
                lines = (
                    (root / f"split/single/no_caption/set_{fold}/{split}.txt")
                    .read_text()
                    .strip()
                    .split("\n")
                )
                counts.update((fold, split, ln.split()[1]) for ln in lines)
    elif dataset == "ferv39k":
        for split in ("train", "test"):
            lines = (root / f"4_setups/All_scenes/{split}_All.csv").read_text().strip().split("\n")
            counts.update((None, split, ln.split()[1]) for ln in lines)
    return counts


def _manifest_counts(manifests, dataset):
    m = pd.read_parquet(manifests / f"{dataset}.parquet")
    q = pd.read_parquet(manifests / f"{dataset}.quarantine.parquet")
    return m, q


@pytest.mark.parametrize("dataset", ["dfew", "mafw", "ferv39k"])
def test_manifest_counts_equal_the_split_files(synth_tiny, manifests_tiny, dataset):
    expected = _split_file_counts(synth_tiny / ROOTS[dataset], dataset)
    m, q = _manifest_counts(manifests_tiny, dataset)
    labels = get_label_set(dataset)
    kept = Counter(
        (None if pd.isna(f) else int(f), s, labels.classes[y])
        for f, s, y in zip(m["fold"], m["split"], m["label"])
    )
    # native label -> class name, to compare with the manifest (kept + quarantined = listed)
    listed = Counter()
    for (fold, split, native), n in expected.items():
        try:
            listed[fold, split, labels.classes[labels.id_of(native)]] += n
        except KeyError:
            listed[fold, split, f"?{native}"] += n
    quarantined = Counter(
        (None if pd.isna(f) else int(f), s, name if name else "?")
        for f, s, name in zip(q["fold"], q["split"], q["label_name"])
    )
    assert sum(listed.values()) == len(m) + len(q)
    for key, n in listed.items():
        fold, split, name = key
        if name.startswith("?"):  # a label outside the class set: quarantined, never kept
            assert quarantined[fold, split, "?"] >= n
        else:
            assert kept[key] + quarantined[key] == n, key
    assert m["n_frames"].min() > 0 and (m["media"] == "frames").all()
    assert (
        m.dtypes["label"] == "int16"
        and str(m.dtypes["fold"]) == "Int8"
        and m.dtypes["n_frames"] == "int32"
    )


def test_every_class_present_in_every_fold_test_split(manifests_tiny):
    for dataset, n_classes in (("dfew", 7), ("mafw", 11)):
        m = pd.read_parquet(manifests_tiny / f"{dataset}.parquet")
        test = m[m["split"] == "test"]
        assert (test.groupby("fold")["label"].nunique() == n_classes).all()
        # each clip is test in exactly one fold, and every fold lists the same clips
        assert test["clip_id"].is_unique
        assert m.groupby("fold")["clip_id"].apply(frozenset).nunique() == 1


@pytest.mark.parametrize(
    "dataset,reason_code",
    [
        ("dfew", "empty_clip"),
        ("mafw", "missing_clip"),
        ("ferv39k", "unknown_label"),
        ("voxceleb2", "unreadable_video"),
        ("affectnet", "not_an_emotion"),
        ("affectnet7", "excluded_class"),
    ],
)
def test_broken_inputs_are_quarantined_with_the_reason(
    synth_tiny, manifests_tiny, dataset, reason_code
):
    q = pd.read_parquet(manifests_tiny / f"{dataset}.quarantine.parquet")
    assert reason_code in set(q["reason_code"])
    hits = q[q["reason_code"] == reason_code]
    # every reason names the file and line (or the media file) it came from
    assert all(
        src.split(":")[0] in reason for src, reason in zip(hits["source_file"], hits["reason"])
    )
    m = pd.read_parquet(manifests_tiny / f"{dataset}.parquet")
    assert not set(hits["clip_id"]) & set(m["clip_id"])


@pytest.mark.parametrize("dataset", sorted(READERS))
def test_rows_in_equal_kept_plus_quarantined(synth_tiny, manifests_tiny, dataset):
    m, q = _manifest_counts(manifests_tiny, dataset)
    root = synth_tiny / ROOTS[dataset]
    if dataset in ("dfew", "mafw", "ferv39k"):
        assert len(m) + len(q) == sum(_split_file_counts(root, dataset).values())
    elif dataset.startswith("affectnet"):
        lists = root / "Manually_Annotated_file_lists"
        lines = len((lists / "training.csv").read_text().strip().split("\n")) - 1
        lines += len((lists / "validation.csv").read_text().strip().split("\n"))  # no header
        assert len(m) + len(q) == lines
    else:
        assert len(m) + len(q) == len(list((root / "dev/mp4").rglob("*.mp4")))
    assert list(m.columns[:10]) == [
        "dataset",
        "clip_id",
        "path",
        "media",
        "label",
        "label_name",
        "fold",
        "split",
        "n_frames",
        "source_file",
    ]
    assert {"reason", "reason_code"} <= set(q.columns)


def test_affectnet7_is_affectnet_without_contempt(manifests_tiny):
    a8 = pd.read_parquet(manifests_tiny / "affectnet.parquet")
    a7 = pd.read_parquet(manifests_tiny / "affectnet7.parquet")
    assert set(a7["clip_id"]) == set(a8.loc[a8["label_name"] != "contempt", "clip_id"])
    assert a7["label"].max() == 6 and (a8["label"] == 7).any()
    assert {"face_x", "face_width", "valence", "arousal"} <= set(a8.columns)


def test_voxceleb2_rows_are_unlabeled_videos_with_frame_counts(manifests_tiny):
    m = pd.read_parquet(manifests_tiny / "voxceleb2.parquet")
    assert (m["label"] == -1).all() and (m["media"] == "video").all() and m["fold"].isna().all()
    assert (m["n_frames"] == 16).all()
    assert m["clip_id"].str.match(r"^id\d{5}/[\w-]{11}/\d{5}$").all()


def test_voxceleb2_frame_count_can_be_skipped(synth_tiny):
    r = read_native("voxceleb2", synth_tiny / "VoxCeleb2", count_frames=False, progress=False)
    assert not r.quarantine and all(row["n_frames"] == -1 for row in r.rows)


def test_voxceleb2_frames_counted_in_a_process_pool(synth_tiny):
    from unilearn.data.native.voxceleb2 import _count_parallel

    paths = sorted(str(p) for p in (synth_tiny / "VoxCeleb2/dev/mp4").rglob("*.mp4")) * 300
    counts = _count_parallel(paths, workers=2, progress=False)
    assert len(counts) == len(paths) and sum(1 for n, err in counts if err) == 300
    assert counts == _count_parallel(paths[:70], workers=1, progress=False) * 30


def test_missing_root_error_names_the_expected_path(tmp_path, capsys):
    with pytest.raises(DatasetLayoutError, match=str(tmp_path / "nowhere")):
        read_native("dfew", tmp_path / "nowhere")
    assert (
        cli(["manifest", "mafw", "--root", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 2
    )
    assert "does not exist" in capsys.readouterr().err


def test_parent_directory_given_as_root_suggests_the_dataset_folder(synth_tiny):
    with pytest.raises(DatasetLayoutError, match="did you mean --root .*DFEW"):
        read_native("dfew", synth_tiny)


def _copy(synth_tiny, tmp_path, dataset):
    dst = tmp_path / ROOTS[dataset]
    shutil.copytree(synth_tiny / ROOTS[dataset], dst, symlinks=True)
    return dst


def test_unreadable_split_file_error_names_the_file(synth_tiny, tmp_path):
    root = _copy(synth_tiny, tmp_path, "dfew")
    bad = root / "EmoLabel_DataSplit/train(single-labeled)/set_2.csv"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    with pytest.raises(SplitFileError, match=r"set_2\.csv"):
        read_native("dfew", root, progress=False)
    bad.write_text("clip;emotion\n1;2\n")
    with pytest.raises(
        SplitFileError, match=r"set_2\.csv line 1: expected the header 'video_name,label'"
    ):
        read_native("dfew", root, progress=False)


def test_missing_split_file_error_names_it(synth_tiny, tmp_path):
    root = _copy(synth_tiny, tmp_path, "mafw")
    (root / "split/single/no_caption/set_4/test.txt").unlink()
    with pytest.raises(DatasetLayoutError, match=r"set_4/test\.txt"):
        read_native("mafw", root, progress=False)


def test_malformed_lines_are_quarantined_with_file_and_line(synth_tiny, tmp_path):
    root = _copy(synth_tiny, tmp_path, "ferv39k")
    f = root / "4_setups/All_scenes/test_All.csv"
    f.write_text(f.read_text() + "just-one-field\n")
    n_lines = len(f.read_text().strip().split("\n"))
    r = read_native("ferv39k", root, progress=False)
    bad = [q for q in r.quarantine if q["reason_code"] == "malformed_line"]
    assert len(bad) == 1 and f"test_All.csv:{n_lines}" in bad[0]["reason"]


def test_duplicate_rows_and_split_disagreements_are_reported(synth_tiny, tmp_path):
    root = _copy(synth_tiny, tmp_path, "dfew")
    test1 = root / "EmoLabel_DataSplit/test(single-labeled)/set_1.csv"
    test2 = root / "EmoLabel_DataSplit/test(single-labeled)/set_2.csv"
    first = test1.read_text().split("\n")[1]
    test1.write_text(test1.read_text() + first + "\n")  # listed twice in one file
    test2.write_text(test2.read_text() + first + "\n")  # and test in a second fold
    r = read_native("dfew", root, progress=False)
    assert any(q["reason_code"] == "duplicate_row" for q in r.quarantine)
    codes = {f.code for f in r.findings}
    assert {"tested_in_several_folds", "train_test_overlap"} <= codes


def test_corrupt_video_is_quarantined_not_fatal(synth_tiny, tmp_path):
    root = _copy(synth_tiny, tmp_path, "voxceleb2")
    victim = sorted((root / "dev/mp4").rglob("00002.mp4"))[0]
    victim.write_bytes(b"not a video at all")
    r = read_native("voxceleb2", root, progress=False)
    reasons = [q["reason"] for q in r.quarantine]
    assert len(reasons) == 2 and any(str(victim.relative_to(root)) in x for x in reasons)


def test_manifest_cli_prints_counts_and_reasons(synth_tiny, tmp_path, capsys):
    assert (
        cli(
            [
                "manifest",
                "dfew",
                "--root",
                str(synth_tiny / "DFEW"),
                "--out",
                str(tmp_path),
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "fold 3 test" in out and "quarantined empty_clip" in out and "kept" in out
    assert (tmp_path / "dfew.parquet").is_file() and (
        tmp_path / "dfew.quarantine.parquet"
    ).is_file()


def test_synthetic_trees_are_marked_face_crops_for_preprocess(manifests_tiny):
    # the real MAFW is full-scene frames that preprocess crops; the synthetic one is face crops
    for dataset in ("mafw", "dfew", "voxceleb2"):
        table = pd.read_parquet(manifests_tiny / f"{dataset}.parquet")
        assert table["face_cropped"].all(), dataset


def test_worker_count_has_one_default_the_jobs_cpus(monkeypatch, synth_tiny):
    """The readers restate no worker count: each requires one, and `read_native` (like the data
    stages' `--workers`) gives the CPUs this job may use."""
    import inspect
    import os

    from unilearn.data import worker_pool

    for dataset, (reader, _) in READERS.items():
        param = inspect.signature(reader).parameters["workers"]
        assert param.default is inspect.Parameter.empty, dataset
    seen = []
    reader, fixed = READERS["ferv39k"]
    monkeypatch.setitem(
        READERS, "ferv39k", (lambda root, **o: seen.append(o) or reader(root, **o), fixed)
    )
    monkeypatch.setattr("unilearn.data.native.job_cpus", lambda: 5)
    read_native("ferv39k", synth_tiny / ROOTS["ferv39k"], progress=False)
    read_native("ferv39k", synth_tiny / ROOTS["ferv39k"], progress=False, workers=0)
    assert [o["workers"] for o in seen] == [5, 0]
    assert worker_pool.job_cpus() == len(os.sched_getaffinity(0))
