"""Which clip-store format? Measures, on face clips at the store's resolution, the bytes per clip and
the time to read a training clip for the two access patterns training uses:

- pre-training: 16 frames at stride 4 from a random start (VideoMAE / MAE-DFER pre-training);
- DFER fine-tuning: 16 frames spread over the whole clip (uniform segments; the worst case for
  video codecs, which must decode from a keyframe).

Candidates: JPEG frames packed in one shard with an offset index (decoded with OpenCV), short-GOP
H.264 in memory (decoded with PyAV and with decord), raw uint8 arrays (memory-mapped).
Prints absolute numbers and ratios to the JPEG shard, all measured in this run.
`python bench/store_formats.py [--clips 24] [--frames 96] [--size 176]`
"""

from __future__ import annotations

import argparse
import io
import time

import av
import cv2
import numpy as np


def face_clip(n_frames: int, size: int, seed: int) -> np.ndarray:
    """A real face (skimage's astronaut) with camera-like drift, zoom and sensor noise."""
    from skimage import data

    rng = np.random.default_rng(seed)
    img = data.astronaut()[30:230, 150:300]  # head, 200 x 150
    frames = []
    for t in range(n_frames):
        ang, zoom = 3 * np.sin(t / 9 + seed), 1 + 0.05 * np.sin(t / 13)
        m = cv2.getRotationMatrix2D((75 + 4 * np.sin(t / 7), 100), ang, zoom)
        warped = cv2.warpAffine(img, m, (150, 200), borderMode=cv2.BORDER_REFLECT)
        f = cv2.resize(warped[25:175], (size, size), interpolation=cv2.INTER_AREA).astype(np.int16)
        f += rng.normal(0, 2, f.shape).astype(np.int16)
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    return np.stack(frames)


def encode_jpeg(clip: np.ndarray, quality: int) -> tuple[bytes, np.ndarray]:
    parts = [
        cv2.imencode(".jpg", f[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
        for f in clip
    ]
    offsets = np.cumsum([0] + [len(p) for p in parts])
    return b"".join(parts), offsets


def read_jpeg(blob: memoryview, offsets: np.ndarray, idx: list[int]) -> np.ndarray:
    return np.stack(
        [
            cv2.imdecode(
                np.frombuffer(blob[offsets[i] : offsets[i + 1]], np.uint8), cv2.IMREAD_COLOR_RGB
            )
            for i in idx
        ]
    )


def encode_h264(clip: np.ndarray, gop: int, crf: int) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = clip.shape[2], clip.shape[1], "yuv420p"
        s.options = {
            "crf": str(crf),
            "g": str(gop),
            "keyint_min": str(gop),
            "bf": "0",
            "preset": "fast",
        }
        for f in clip:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return buf.getvalue()


def read_h264_av(data: bytes, idx: list[int], gop: int) -> np.ndarray:
    want = sorted(set(idx))
    got: dict[int, np.ndarray] = {}
    with av.open(io.BytesIO(data)) as c:
        s = c.streams.video[0]
        tb, rate = s.time_base, s.average_rate
        pos = 0
        i = 0
        while i < len(want):
            key = (want[i] // gop) * gop
            if pos != key or i == 0:
                c.seek(int(key / rate / tb), stream=s, backward=True, any_frame=False)
            for frame in c.decode(s):
                n = round(frame.pts * tb * rate)
                pos = n + 1
                if n in want and n not in got:
                    got[n] = frame.to_ndarray(format="rgb24")
                    while i < len(want) and want[i] in got:
                        i += 1
                    if i == len(want) or want[i] // gop != n // gop and want[i] - n > gop:
                        break
            else:
                break
    return np.stack([got[j] for j in idx])


def read_h264_decord(data: bytes, idx: list[int]) -> np.ndarray:
    import decord

    vr = decord.VideoReader(io.BytesIO(data), ctx=decord.cpu(0), num_threads=1)
    return vr.get_batch(idx).asnumpy()


def patterns(n: int, rng: np.random.Generator) -> dict[str, list[int]]:
    start = int(rng.integers(0, n - 64 + 1))
    seg = n / 16
    return {
        "pretrain 16x stride4": [start + 4 * i for i in range(16)],
        "dfer 16 uniform segs": [int(seg * i + rng.integers(0, int(seg))) for i in range(16)],
    }


def timeit(fn, repeats: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--size", type=int, default=176)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    clips = [face_clip(args.frames, args.size, s) for s in range(args.clips)]
    rng = np.random.default_rng(0)
    reads = [patterns(args.frames, rng) for _ in clips]

    formats: dict[str, tuple[int, dict[str, float], float]] = {}

    def measure(name, encoded, reader, err_of):
        sizes = [len(e[0]) if isinstance(e, tuple) else len(e) for e in encoded]
        res = {}
        for pat in reads[0]:
            res[pat] = np.mean(
                [
                    timeit(lambda e=e, r=r, pat=pat: reader(e, r[pat]), args.repeats)
                    for e, r in zip(encoded, reads)
                ]
            )
        err = np.mean([err_of(e, c) for e, c in zip(encoded[:4], clips[:4])])
        formats[name] = (int(np.mean(sizes)), res, err)

    idx_all = list(range(args.frames))
    for q in (90, 95):
        enc = [encode_jpeg(c, q) for c in clips]
        measure(f"jpeg q{q} shard", [(memoryview(b), o) for b, o in enc],
                lambda e, i: read_jpeg(e[0], e[1], i),
                lambda e, c: np.abs(read_jpeg(e[0], e[1], idx_all).astype(int) - c).mean())  # fmt: skip
    for gop, crf in ((8, 18), (16, 18), (16, 23)):
        enc = [encode_h264(c, gop, crf) for c in clips]
        measure(f"h264 g{gop} crf{crf} PyAV", enc, lambda e, i, g=gop: read_h264_av(e, i, g),
                lambda e, c: np.abs(read_h264_decord(e, idx_all).astype(int) - c).mean())  # fmt: skip
        measure(f"h264 g{gop} crf{crf} decord", enc, read_h264_decord,
                lambda e, c: np.abs(read_h264_decord(e, idx_all).astype(int) - c).mean())  # fmt: skip
    raw = [np.ascontiguousarray(c) for c in clips]
    measure("raw uint8", [(memoryview(r.tobytes()), r.shape) for r in raw],
            lambda e, i: np.frombuffer(e[0], np.uint8).reshape(e[1])[i].copy(),
            lambda e, c: 0.0)  # fmt: skip

    ref = formats["jpeg q90 shard"]
    print(f"{args.clips} face clips of {args.frames} frames at {args.size}x{args.size}, one thread; "
          f"time per 16-frame read (ms) and ratio to the JPEG shard (lower is better)")  # fmt: skip
    pats = list(reads[0])
    print(
        f"{'format':28s} {'KB/clip':>8s} {'x':>5s}  "
        + "  ".join(f"{p:>26s}" for p in pats)
        + "  mean|err|"
    )
    for name, (size, res, err) in formats.items():
        cells = "  ".join(
            f"{res[p] * 1e3:8.2f} ms ({res[p] / ref[1][p]:5.2f}x)      " for p in pats
        )
        print(f"{name:28s} {size / 1024:8.1f} {size / ref[0]:5.2f}  {cells}  {err:6.2f}")


if __name__ == "__main__":
    main()
