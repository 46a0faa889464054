"""Face detection, tracking and cropping (unilearn.data.face) and media decoding (decode)."""

from __future__ import annotations

import numpy as np
import pytest
from _media import astronaut, raw_face_video, write_frames, write_mp4

from unilearn.data import decode
from unilearn.data.face import (
    FaceCropConfig,
    FaceDetector,
    NoFaceError,
    crop_frames,
    face_boxes,
    smooth_boxes,
    square_boxes,
    track_face,
)

# The astronaut's face in skimage's 512x512 photo (eyes near (203, 101) and (246, 103)).
ASTRONAUT_FACE = (175, 55, 275, 180)


def _contains(box, point) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


@pytest.mark.parametrize("backend", ["mtcnn", "haar"])
def test_detector_finds_the_face_in_a_real_photo(backend):
    faces = FaceDetector(backend).detect(astronaut())
    assert len(faces) == 1
    box = faces[0].box
    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    assert _contains(ASTRONAUT_FACE, centre)
    assert 60 < box[2] - box[0] < 130
    if backend == "mtcnn":
        assert faces[0].score > 0.99
        assert faces[0].landmarks.shape == (5, 2)
        assert _contains(box, faces[0].landmarks[2])  # the nose is inside the face box


def test_auto_detector_falls_back_to_haar_on_a_clip_mtcnn_misses():
    # An impossible MTCNN threshold makes MTCNN miss the face; the cascade (no score threshold)
    # still finds it, for the whole clip.
    frames = np.stack([astronaut()] * 3)
    strict = FaceDetector("auto", min_score=1.01)
    assert strict.backend == "mtcnn" and strict.detect(frames[0]) == []
    track, n_detections = track_face(frames, strict, FaceCropConfig(detect_stride=1))
    assert n_detections == 3
    centre = ((track[0, 0] + track[0, 2]) / 2, (track[0, 1] + track[0, 3]) / 2)
    assert _contains(ASTRONAUT_FACE, centre)
    with pytest.raises(NoFaceError):  # an explicit backend never falls back
        track_face(frames, FaceDetector("mtcnn", min_score=1.01))


def test_detector_finds_nothing_in_a_blank_frame():
    assert FaceDetector().detect(np.full((240, 320, 3), 128, np.uint8)) == []


def test_track_follows_a_moving_face_and_crops_it_steadily():
    frames = raw_face_video(n_frames=20, step=6)
    boxes, n_detections = face_boxes(frames, FaceDetector(), FaceCropConfig(detect_stride=5))
    crops = crop_frames(frames, boxes, 64)
    assert crops.shape == (20, 64, 64, 3) and crops.dtype == np.uint8
    assert n_detections == 5  # frames 0, 5, 10, 15, 19
    centres = (boxes[:, 0] + boxes[:, 2]) / 2
    assert centres[-1] - centres[0] == pytest.approx(6 * 19, abs=4)  # moved with the face

    # the face moves rigidly, so every crop shows (nearly) the same picture
    def diff(a, b):
        return np.abs(a.astype(int) - b.astype(int)).mean()

    untracked = crop_frames(frames[[0, -1]], np.repeat(boxes[:1], 2, axis=0), 64)
    assert diff(crops[0], crops[-1]) < 0.4 * diff(untracked[0], untracked[1])


def test_clip_without_a_face_raises_noface_error():
    frames = np.full((6, 120, 160, 3), 90, np.uint8)
    with pytest.raises(NoFaceError, match="no face found"):
        face_boxes(frames, FaceDetector())


def test_smoothing_removes_box_jitter_and_squares_keep_centres():
    rng = np.random.default_rng(0)
    boxes = np.tile(np.array([100, 100, 160, 170], np.float32), (50, 1))
    noisy = boxes + rng.normal(0, 4, boxes.shape).astype(np.float32)
    smoothed = smooth_boxes(noisy, 9)
    assert np.abs(smoothed - boxes).std() < 0.5 * np.abs(noisy - boxes).std()
    sq = square_boxes(boxes[:1], 1.5)[0]
    assert sq[2] - sq[0] == pytest.approx(1.5 * 70) and sq[3] - sq[1] == pytest.approx(1.5 * 70)
    assert (sq[0] + sq[2]) / 2 == pytest.approx(130)


def test_video_decoders_agree_and_frame_folders_sort_naturally(tmp_path):
    frames = raw_face_video(n_frames=12)
    mp4 = write_mp4(tmp_path / "clip.mp4", frames)
    by_decord = decode.read_video(mp4)
    by_av = decode._read_video_av(mp4, None)
    assert by_decord.shape == by_av.shape == frames.shape
    assert np.abs(by_decord.astype(int) - by_av.astype(int)).mean() < 2
    assert np.array_equal(decode.read_video(mp4, [3, 7]), by_decord[[3, 7]])

    folder = write_frames(tmp_path / "frames", frames)  # 1.jpg .. 12.jpg: 10 after 9
    read = decode.read_frames(folder)
    assert [p.name for p in decode.list_frames(folder)][8:10] == ["9.jpg", "10.jpg"]
    assert np.abs(read.astype(int) - frames.astype(int)).mean() < 3


def test_broken_media_raise_errors_naming_the_file(tmp_path):
    mp4 = write_mp4(tmp_path / "clip.mp4", raw_face_video(n_frames=12))
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(mp4.read_bytes()[:400])
    with pytest.raises(decode.MediaError, match="truncated.mp4"):
        decode.read_video(truncated)
    (tmp_path / "empty").mkdir()
    with pytest.raises(decode.MediaError, match="no image files"):
        decode.read_frames(tmp_path / "empty")
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(decode.MediaError, match="bad.jpg"):
        decode.read_image(tmp_path / "bad.jpg")
