"""H.264 clip records: a clip's frames as closed groups of `GOP` frames, each its own Annex-B
stream (an IDR frame, then P frames, no B frames), so any frame decodes from the start of its
group alone: reading 16 frames at stride 4 from any start decodes about 4 groups of a
61-frame span, never the clip from its start.

Why a video codec for some stores: pre-training reads VoxCeleb2 clips at stride 4 from a start
on any frame (the authors' loader). JPEG frames make that a store of every frame, ~4x the bytes
of the every-4th-frame store; H.264 keeps every frame in fewer bytes than JPEG keeps a quarter of
them, at a decode cost per clip that `bench/store_size.py` measures (docs/data-loading.md).
`data.store.codec.<dataset>: h264` chooses it; JPEG stays every other store's codec (its frames
decode alone, the fine-tuning loaders' fast path).

PyAV (FFmpeg's libx264 and its H.264 decoder), not hand-written: a well-kept binding of the
codec the datasets themselves ship in. Colour: RGB <-> YUV 4:2:0 by OpenCV both ways (BT.601, 4:2:0
chroma as the JPEG path's; ~10x faster than PyAV's per-frame swscale conversion); frames need an
even height and width.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import cv2
import numpy as np

GOP = 16  # frames per closed group: the decode unit of a random read
CRF = 18  # libx264's constant-rate factor (visually lossless; VoxCeleb2's own mp4 are lossier)
_ENCODER = {"crf": str(CRF), "preset": "medium", "tune": "fastdecode", "bf": "0",
            "g": str(GOP), "keyint_min": str(GOP), "sc_threshold": "0"}  # fmt: skip


def encode_groups(frames: np.ndarray) -> list[bytes]:
    """RGB uint8 `[T, H, W, 3]` -> one self-contained Annex-B H.264 stream per `GOP` frames."""
    import av

    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"H.264 (YUV 4:2:0) needs an even frame size, got {h}x{w}")
    groups = []
    for start in range(0, t, GOP):
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height, codec.pix_fmt = w, h, "yuv420p"
        codec.time_base, codec.framerate = Fraction(1, 25), Fraction(25)
        codec.options = _ENCODER
        codec.thread_count = 1
        packets = []
        for i, frame in enumerate(frames[start : start + GOP]):
            yuv = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2YUV_I420)
            video = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            video.pts = i
            packets += codec.encode(video)
        packets += codec.encode(None)
        groups.append(b"".join(bytes(p) for p in packets))
    return groups


def decode_group(
    data: bytes, wanted: Sequence[int], n_frames: int, height: int, width: int
) -> dict[int, np.ndarray]:
    """Frames `wanted` (indices into the group's `n_frames`) of one group as RGB uint8
    `[H, W, 3]`; decoding stops after the last one asked for, and only those are converted to
    RGB. Raises `ValueError` when the bytes do not decode to frames of that size and count."""
    import av

    last, wanted, out = max(wanted), set(wanted), {}
    codec = av.CodecContext.create("h264", "r")
    codec.thread_count = 1  # loader workers are the parallelism: no decoder threads per clip
    codec.options = {"err_detect": "explode"}  # damaged data is an error, not concealed frames
    count = 0
    try:
        for packet in [
            *codec.parse(data),
            *codec.parse(None),
            None,
        ]:  # parser, then decoder flushed
            for frame in codec.decode(packet):
                if frame.height != height or frame.width != width:
                    raise ValueError(f"a frame decodes to {frame.height}x{frame.width}")
                if count in wanted:  # the planes as they are, converted by OpenCV as encoded
                    out[count] = cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
                if count == last:
                    return out
                count += 1
    except av.error.FFmpegError as err:
        raise ValueError(f"H.264 data does not decode ({err})") from None
    raise ValueError(f"H.264 group decodes to {count} frames, {n_frames} recorded")
