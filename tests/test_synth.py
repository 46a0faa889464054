"""`unilearn synth`: native layouts, determinism, learnable class signal, detectable raw faces."""

import hashlib
import json
from pathlib import Path

import numpy as np

from unilearn.data.synth import PRESETS, ROOTS, write_synthetic
from unilearn.data.synth_face import (
    EXPRESSIONS,
    Pose,
    expression_at,
    render,
    render_background,
    sample_identity,
)


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_synth_is_deterministic_from_the_seed(synth_tiny, tmp_path):
    write_synthetic(tmp_path / "again", "tiny", seed=0, progress=False)
    assert _tree_digest(tmp_path / "again") == _tree_digest(synth_tiny)
    write_synthetic(tmp_path / "other", "tiny", seed=1, progress=False)
    other = _tree_digest(tmp_path / "other")
    assert other.keys() != _tree_digest(synth_tiny).keys() or other != _tree_digest(synth_tiny)


def test_synth_writes_native_layouts(synth_tiny):
    assert (synth_tiny / "DFEW/EmoLabel_DataSplit/test(single-labeled)/set_5.csv").is_file()
    assert next((synth_tiny / "DFEW/Clip/jpg_256").iterdir()).name.isdigit()
    assert (
        (synth_tiny / "MAFW/split/single/no_caption/set_3/train.txt")
        .read_text()
        .split("\n")[0]
        .split()[0]
        .endswith(".mp4")
    )
    line = (synth_tiny / "FERV39K/4_setups/All_scenes/test_All.csv").read_text().split("\n")[0]
    path, emotion = line.split(" ")
    assert (
        path.split("/")[1] == emotion
        and (synth_tiny / "FERV39K/2_ClipsforFaceCrop" / path).is_dir()
    )
    header = (
        (synth_tiny / "AffectNet/Manually_Annotated_file_lists/training.csv")
        .read_text()
        .split("\n")[0]
    )
    assert header.startswith("subDirectory_filePath,face_x,face_y,face_width,face_height")
    assert list((synth_tiny / "VoxCeleb2/dev/mp4").glob("id*/*/*.mp4"))
    summary = json.loads((synth_tiny / "synth.json").read_text())
    assert summary["synthetic"] and summary["preset"] == "tiny" and summary["roots"] == ROOTS
    assert {b["reason_code"] for b in summary["broken"]} >= {
        "empty_clip",
        "missing_clip",
        "unknown_label",
        "unreadable_video",
        "not_an_emotion",
    }
    assert any(not v["has_face"] for v in summary["raw_videos"]) and any(
        v["has_face"] for v in summary["raw_videos"]
    )


def test_every_class_is_in_every_fold_test_split(synth_tiny):
    for fold in range(1, 6):
        labels = {
            ln.split(",")[1]
            for ln in (synth_tiny / f"DFEW/EmoLabel_DataSplit/test(single-labeled)/set_{fold}.csv")
            .read_text()
            .split()[1:]
        }
        assert labels == {str(i) for i in range(1, 8)}
        names = {
            ln.split()[1]
            for ln in (synth_tiny / f"MAFW/split/single/no_caption/set_{fold}/test.txt")
            .read_text()
            .strip()
            .split("\n")
        }
        assert len(names) == 11


def test_emotions_differ_far_more_than_identities_of_one_emotion():
    """The class signal is strong: at 64x64, two emotions on the same face differ more than the
    same emotion on the same face at two moments of its apex."""
    rng = np.random.default_rng(0)
    identity = sample_identity(rng)
    pose = Pose(32, 33, 19)
    background = render_background(64, 64, identity)

    def face(emotion, phase=0.0):
        s = expression_at(
            emotion,
            1.0,
            intensity=1.0,
            start=0.0,
            speed=1.0,
            phase=phase,
            identity=identity,
            pose=pose,
        )
        return render(background, identity, s).astype(np.float32)

    within = np.mean(
        [np.abs(face(e, 0.0) - face(e, 0.37)).mean() for e in ("neutral", "sad", "surprise")]
    )
    emotions = [e for e in EXPRESSIONS if e != "neutral"]
    between = np.mean([np.abs(face(e) - face("neutral")).mean() for e in emotions])
    assert between > 2 * within
    assert min(np.abs(face(e) - face("neutral")).mean() for e in emotions) > 0.5


def test_demo_preset_puts_every_class_in_every_fold():
    p = PRESETS["demo"]
    assert p.dfew_per_class >= 5 and p.mafw_per_class >= 5 and p.broken
    # a few hundred clips per dataset: enough for a tiny ViT to generalise, small enough for CPU
    assert 200 <= 7 * p.dfew_per_class <= 300 and 200 <= 11 * p.mafw_per_class <= 300


def test_synth_refuses_to_overwrite_a_foreign_directory(tmp_path, capsys):
    from unilearn.cli import main as cli

    (tmp_path / "thesis.tex").write_text("precious")
    assert cli(["synth", "--out", str(tmp_path), "--preset", "tiny", "--no-progress"]) == 1
    assert (
        "refusing" in capsys.readouterr().err
        and (tmp_path / "thesis.tex").read_text() == "precious"
    )
