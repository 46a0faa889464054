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
