"""H.264 clip records: a clip's frames split into `PHASES` phase streams (frame i in stream
i % PHASES, at position i // PHASES), each coded as closed groups of `GOP` frames that are their
own Annex-B streams (an IDR frame, then P frames, no B frames). A read at stride 4, what
pre-training does from a start on any frame, takes 16 consecutive frames of one phase stream and
decodes 2-3 groups of it; any other set of frames reads too, decoding more.

Why a video codec for some stores: pre-training reads VoxCeleb2 clips at stride 4 from a start
on any frame (the authors' loader). JPEG frames make that a store of every frame, ~4x the bytes
of the every-4th-frame store; these records keep every frame in ~0.65x the bytes of every 4th
frame as JPEG, at ~1.2-1.3x JPEG's read time per clip (`bench/store_size.py`, `bench/loader.py`;
docs/data-loading.md). `data.store.codec.<dataset>: h264` chooses it; JPEG stays the default
(each frame decodes alone: any temporal pattern costs the same).

PyAV (FFmpeg's libx264 and its H.264 decoder), not hand-written: a well-kept binding of the codec
the datasets themselves ship in. Colour: RGB <-> YUV 4:2:0 by OpenCV both ways (BT.601, 4:2:0
chroma as the JPEG path's; ~10x faster than PyAV's per-frame swscale conversion); frames need an
even height and width. Damaged data is an error (FFmpeg's `err_detect=explode`), not concealed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction

import cv2
import numpy as np

GOP = 8  # frames of a phase stream per closed group: the decode unit of a random read
PHASES = 4  # phase streams: pre-training's stride, so one read stays within one stream
CRF = 18  # libx264's constant-rate factor (visually lossless; VoxCeleb2's own mp4 are lossier)
_ENCODER = {"crf": str(CRF), "preset": "medium", "tune": "fastdecode", "bf": "0",
            "g": str(GOP), "keyint_min": str(GOP), "sc_threshold": "0"}  # fmt: skip


def encode_clip_chunks(frames: np.ndarray) -> list[bytes]:
    """RGB uint8 `[T, H, W, 3]` -> the record's chunks: the groups of phase stream 0, then of
    stream 1, ... (`chunk_of` finds a frame's)."""
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"H.264 (YUV 4:2:0) needs an even frame size, got {h}x{w}")
    return [g for phase in range(PHASES) for g in _encode_groups(frames[phase::PHASES])]


def _encode_groups(frames: np.ndarray) -> list[bytes]:
    """One self-contained Annex-B H.264 stream per `GOP` frames."""
    import av

    _, h, w, _ = frames.shape
    groups = []
    for start in range(0, len(frames), GOP):
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


def n_chunks(n_frames: int, group: int, phases: int) -> int:
    """Chunks of a record of `n_frames` frames."""
    return sum(-(-len(range(p, n_frames, phases)) // group) for p in range(phases))


def read_frames(
    chunk: Callable[[int], np.ndarray],
    indices: Sequence[int],
    n_frames: int,
    group: int,
    phases: int,
    size: tuple[int, int],
) -> dict[int, np.ndarray]:
    """Frames `indices` of a record whose chunk c is `chunk(c)`: index -> RGB uint8 `[H, W, 3]`,
    each group decoded once, up to the last frame asked of it. Raises `ValueError` naming the
    group that does not decode."""
    lengths = [len(range(p, n_frames, phases)) for p in range(phases)]
    first = np.cumsum([0] + [-(-n // group) for n in lengths])  # first chunk of each phase
    wanted: dict[tuple[int, int], list[int]] = {}
    for i in indices:
        phase, position = i % phases, i // phases
        wanted.setdefault((phase, position // group), []).append(position % group)
    out: dict[int, np.ndarray] = {}
    for (phase, g), positions in wanted.items():
        length = min(group, lengths[phase] - g * group)
        try:
            frames = decode_group(chunk(int(first[phase]) + g), positions, length, *size)
        except ValueError as err:
            raise ValueError(f"phase {phase} group {g}: {err}") from None
        for j, frame in frames.items():
            out[(g * group + j) * phases + phase] = frame
    return out


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
