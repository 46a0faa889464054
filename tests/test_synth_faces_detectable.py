"""The synthetic raw scene videos hold a face that real detectors find (the face-clip stage and
`unilearn predict` run on them); the no-face video holds none."""

import json

import av
import numpy as np
import pytest

from unilearn.data.face import FaceDetector


def _frames(path, every=4):
    with av.open(str(path)) as c:
        return [
            f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0)) if i % every == 0
        ]


@pytest.mark.parametrize("backend", ["haar", "mtcnn"])
def test_raw_video_faces_are_found_by_a_real_detector(synth_tiny, backend):
    detector = FaceDetector(backend)
    summary = json.loads((synth_tiny / "synth.json").read_text())
    for video in summary["raw_videos"]:
        frames = _frames(synth_tiny / video["file"])
        found = np.array([len(detector.detect(f)) > 0 for f in frames])
        if video["has_face"]:
            # the tracker bridges the gaps; Haar must find most frames, MTCNN several
            assert found.mean() >= (0.8 if backend == "haar" else 0.25), (video, found)
        else:
            assert found.mean() <= 0.1, (video, found)


def test_synthetic_mafw_and_affectnet_faces_carry_landmarks_the_authors_framing_finds(
    manifests_tiny,
):
    # AffectNet's default framing finds the face inside each box with MTCNN (landmarks needed;
    # the rest keep the box crop). MAFW's detects every frame of real, full-scene rows; the
    # synthetic rows are marked face-cropped and resized, but their faces carry landmarks too
    import pandas as pd

    from unilearn.data.decode import read_frames, read_image
    from unilearn.data.face_clip import detector_for

    detector = detector_for("auto", "authors_mtcnn")
    mafw = pd.read_parquet(manifests_tiny / "mafw.parquet").drop_duplicates("clip_id")
    found = [
        any(f.landmarks is not None for f in detector.detect(frame))
        for path in mafw["path"][:12]
        for frame in read_frames(path)
    ]
    assert np.mean(found) >= 0.6, np.mean(found)
    affectnet = pd.read_parquet(manifests_tiny / "affectnet.parquet").dropna(subset=["face_x"])
    inside = []
    for row in affectnet.itertuples():
        image = read_image(row.path)
        x0, y0 = int(row.face_x), int(row.face_y)
        crop = image[y0 : y0 + int(row.face_height), x0 : x0 + int(row.face_width)]
        inside.append(bool(detector.detect(np.ascontiguousarray(crop))))
    assert np.mean(inside) >= 0.4, np.mean(inside)
