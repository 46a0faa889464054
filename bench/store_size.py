"""The pre-training store's size and the preprocess cost: VoxCeleb2-like clips (224 x 224 H.264
mp4, a real face with camera-like motion) stored at the paper's 176-px short side keeping every
frame and every 4th frame (`--frame-stride 4`, what pre-training at stride 4 reads), framed as the
authors (`authors_region`: their 160x160 region, stored at 160 px) and as the whole frame
(`whole_frame`, resized to 176). Prints bytes per clip and per frame, the core-seconds of
preprocess per clip (one process, so CPU time = core time) and the projected VoxCeleb2 store
(1,092,009 clips of ~7.8 s at 25 fps)."""

from __future__ import annotations

import argparse
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

from unilearn.data.preprocess import PreprocessSettings, preprocess  # noqa: E402

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--frames", type=int, default=round(VOX_SECONDS * VOX_FPS))
    ap.add_argument("--stride", type=int, default=4)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest = make_manifest(root, args.clips, args.frames)
        results = {}
        for framing in ("authors_region", "whole_frame"):
            for stride in (1, args.stride):
                store = root / f"store-{framing}-{stride}"
                cpu0, wall0 = time.process_time(), time.perf_counter()
                settings = PreprocessSettings(
                    short_side=SHORT_SIDE, frame_stride=stride, framing=framing
                )
                preprocess(manifest, store, settings, workers=0, progress=False)
                cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
                size = sum(p.stat().st_size for p in (store / "voxceleb2").glob("shard-*.ulc"))
                kept = sum(len(range(0, args.frames, stride)) for _ in range(args.clips))
                results[framing, stride] = (
                    size / args.clips,
                    size / kept,
                    cpu / args.clips,
                    wall / args.clips,
                )
    print(f"input: {args.clips} VoxCeleb2-like clips x {args.frames} frames (224x224 H.264, real face texture); "
          f"store: {SHORT_SIDE}px short side, JPEG q90; one process")  # fmt: skip
    vox_frames = VOX_SECONDS * VOX_FPS
    for (framing, stride), (per_clip, per_frame, cpu, wall) in results.items():
        projected = VOX_CLIPS * len(range(0, round(vox_frames), stride)) * per_frame
        print(f"  {framing:<14} frame_stride {stride}: {per_clip / 1024:7.0f} KiB per clip, {per_frame / 1024:.1f} KiB per kept frame, "
              f"preprocess {cpu:.3f} core-s per clip ({wall:.3f} s wall); VoxCeleb2 projected {projected / 1e12:.2f} TB")  # fmt: skip
    for framing in ("authors_region", "whole_frame"):
        one, k = results[framing, 1][0], results[framing, args.stride][0]
        print(f"  {framing}: stride {args.stride} / stride 1 bytes per clip: {k / one:.3f}")
    for stride in (1, args.stride):
        ratio = results["authors_region", stride][0] / results["whole_frame", stride][0]
        print(f"  stride {stride}: authors_region / whole_frame bytes per clip: {ratio:.3f}")


if __name__ == "__main__":
    main()
