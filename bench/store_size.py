"""The pre-training store's size and the preprocess cost: VoxCeleb2-like clips (224 x 224 H.264
mp4, a real face with camera-like motion) stored at the paper's 176-px short side keeping every
frame and every 4th frame (`--frame-stride 4`, what pre-training at stride 4 reads), framed as the
authors (`authors_region`: their 160x160 region, stored at 160 px) and as the whole frame
(`whole_frame`, resized to 176), as JPEG frames; and every frame of the authors' region as H.264
groups (`--codec h264`: pre-training may then start on any frame). Prints bytes per clip and per
frame, the core-seconds of preprocess per clip (one process, so CPU time = core time), the time
of one pre-training read (16 frames at stride 4 from a random start) and the projected VoxCeleb2
store (1,092,009 clips of ~7.8 s at 25 fps)."""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import cv2
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from _media import write_mp4  # noqa: E402
from loader import VOX_CLIPS, VOX_FPS, VOX_SECONDS  # noqa: E402
from store_formats import face_clip  # noqa: E402

from unilearn.data.frame_sampling import pretrain_indices  # noqa: E402
from unilearn.data.preprocess import PreprocessSettings, preprocess  # noqa: E402
from unilearn.data.store import ClipStore  # noqa: E402

SHORT_SIDE = 176


def make_manifest(root: Path, n_clips: int, n_frames: int) -> Path:
    rows = []
    for i in range(n_clips):
        path = write_mp4(
            root / "mp4" / f"id{i:05d}" / "yt" / "00001.mp4", face_clip(n_frames, 224, seed=i)
        )
        rows.append({"dataset": "voxceleb2", "clip_id": f"id{i:05d}/yt/00001", "path": str(path), "media": "video",
                     "label": -1, "label_name": "", "fold": None, "split": "train", "n_frames": n_frames,
                     "source_file": "bench"})  # fmt: skip
    manifest = root / "voxceleb2.parquet"
    pd.DataFrame(rows).astype({"label": "int16", "fold": "Int8", "n_frames": "int32"}).to_parquet(
        manifest
    )
    return manifest


def read_ms(store: Path, stride: int, repeats: int) -> float:
    """Milliseconds per pre-training read: 16 frames at source stride 4 from a random start
    (`pretrain_indices`, in stored frames), every clip of the store `repeats` times, one thread."""
    table = pd.read_parquet(store / "voxceleb2.parquet")
    clips, rng = ClipStore(store), random.Random(0)
    reads = [(row.store_key, row.n_frames) for row in table.itertuples()] * repeats
    start = time.perf_counter()
    for key, n in reads:
        clips.read_numpy(key, pretrain_indices(n, 16, 4 // stride, rng))
    return (time.perf_counter() - start) / len(reads) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--frames", type=int, default=round(VOX_SECONDS * VOX_FPS))
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--reads", type=int, default=20, help="pre-training reads per clip timed")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    # (framing, stride, codec): JPEG of every frame and every `stride`-th, H.264 of every frame
    variants = [(f, k, "jpeg") for f in ("authors_region", "whole_frame") for k in (1, args.stride)]
    variants.append(("authors_region", 1, "h264"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest = make_manifest(root, args.clips, args.frames)
        results = {}
        for framing, stride, codec in variants:
            store = root / f"store-{framing}-{stride}-{codec}"
            cpu0, wall0 = time.process_time(), time.perf_counter()
            settings = PreprocessSettings(
                short_side=SHORT_SIDE, frame_stride=stride, framing=framing, codec=codec
            )
            preprocess(manifest, store, settings, workers=0, progress=False)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            size = sum(p.stat().st_size for p in (store / "voxceleb2").glob("shard-*.ulc"))
            kept = sum(len(range(0, args.frames, stride)) for _ in range(args.clips))
            results[framing, stride, codec] = dict(
                clip=size / args.clips, frame=size / kept, cpu=cpu / args.clips,
                wall=wall / args.clips, stores=store,
            )  # fmt: skip
        # the reads, interleaved twice so that machine noise hits every store alike
        for _ in range(2):
            for (_, stride, _), r in results.items():
                r.setdefault("read", []).append(read_ms(r["stores"], stride, args.reads // 2))
    print(f"input: {args.clips} VoxCeleb2-like clips x {args.frames} frames (224x224 H.264, real face texture); "
          f"store: {SHORT_SIDE}px short side (authors_region: 160 px), JPEG q90 or H.264 groups; one process")  # fmt: skip
    vox_frames = VOX_SECONDS * VOX_FPS
    for (framing, stride, codec), r in results.items():
        projected = VOX_CLIPS * len(range(0, round(vox_frames), stride)) * r["frame"]
        r["read"] = sum(r["read"]) / len(r["read"])
        print(f"  {framing:<14} frame_stride {stride} {codec:<4}: {r['clip'] / 1024:7.0f} KiB per clip, {r['frame'] / 1024:.1f} KiB per kept frame, "
              f"preprocess {r['cpu']:.3f} core-s per clip ({r['wall']:.3f} s wall), pre-training read {r['read']:.2f} ms; "
              f"VoxCeleb2 projected {projected / 1e12:.2f} TB")  # fmt: skip
    for framing in ("authors_region", "whole_frame"):
        one, k = results[framing, 1, "jpeg"]["clip"], results[framing, args.stride, "jpeg"]["clip"]
        print(f"  {framing}: stride {args.stride} / stride 1 bytes per clip: {k / one:.3f}")
    for stride in (1, args.stride):
        a, w = results["authors_region", stride, "jpeg"], results["whole_frame", stride, "jpeg"]
        print(
            f"  stride {stride}: authors_region / whole_frame bytes per clip: {a['clip'] / w['clip']:.3f}"
        )
    h, q = results["authors_region", 1, "h264"], results["authors_region", args.stride, "jpeg"]
    print(f"  authors_region, every frame as H.264 / every {args.stride}th as JPEG: bytes per clip "
          f"{h['clip'] / q['clip']:.3f}, pre-training read time {h['read'] / q['read']:.2f}x, "
          f"preprocess core-s {h['cpu'] / q['cpu']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
