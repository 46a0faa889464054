"""End-to-end `unilearn predict` throughput on CPU (issue 6): 10-second 720p videos (25 fps, H.264)
with a synthetic face in a larger scene, scored by the tiny and the ViT-B UniLearn models (random
weights: timing only), split into decode / face (detect + track + crop + JPEG) / model seconds.

Printed, all measured in this run (the machine is shared and noisy: compare the ratios):
  - per model: videos/s end to end, sequential (--workers 0) and overlapped (1 prep thread while
    the model runs), and the mean decode / face / model seconds per video;
  - face seconds with detection on every frame / on every 5th frame (the default detect stride);
  - peak memory of predict's lazy decoding / decoding the whole video as preprocess does.

    python bench/predict.py [--videos 2] [--seconds 10] [--models tiny,base] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import tracemalloc
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from unilearn.catalogue import get_label_set
from unilearn.data.decode import read_media
from unilearn.data.face import FaceCropConfig
from unilearn.data.face_clip import PreprocessSettings
from unilearn.data.synth_clips import write_mp4
from unilearn.data.synth_face import Pose, expression_at, render, render_background, sample_identity
from unilearn.models import create_model, save_checkpoint
from unilearn.predict.inputs import discover_inputs
from unilearn.predict.model import load_inference_model
from unilearn.predict.pipeline import PredictOptions, prepare_input
from unilearn.predict.runner import predict_inputs

# the options of `unilearn predict --crop detect` (its other defaults)
DETECT = PredictOptions(n_clips=2, crop="detect", timeline=False, window_stride=None, fps=None)

WIDTH, HEIGHT, FPS = 1280, 720, 25
PATCH = 320  # the face is drawn on a patch of the scene, then pasted (drawing 720p is slow)
MODELS = {  # name -> (registered model, store short side as the paper/demo use)
    "tiny": ("unilearn_tiny_patch16_64", 72),
    "base": ("unilearn_base_patch16_160", 176),
}
EMOTIONS = ("happy", "surprise", "sad", "angry")


def make_video(path: Path, seconds: float, seed: int) -> Path:
    """A 720p scene with one face drifting across it, its expression changing over time."""
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    identity = replace(sample_identity(rng), skin=(238.0, 198.0, 166.0))  # detector-friendly
    scene = np.clip(render_background(HEIGHT, WIDTH, identity), 0, 255).astype(np.uint8)
    n = int(seconds * FPS)
    x0, x1 = rng.uniform(200, 400), rng.uniform(800, 1000)
    y = rng.uniform(150, 250)
    frames = []
    for i in range(n):
        t = i / max(n - 1, 1)
        left, top = int(x0 + (x1 - x0) * t), int(y)
        patch_bg = scene[top : top + PATCH, left : left + PATCH].astype(np.float32)
        pose = Pose(PATCH / 2, PATCH * 0.42, 62.0, 4.0 * np.sin(6 * t))
        emotion = EMOTIONS[(seed + int(t * 2.999)) % len(EMOTIONS)]
        state = expression_at(emotion, (t * 3) % 1.0, intensity=0.8, start=0.1, speed=1.0,
                              phase=0.0, identity=identity, pose=pose)  # fmt: skip
        frame = scene.copy()
        frame[top : top + PATCH, left : left + PATCH] = render(patch_bg, identity, state, rng)
        frames.append(frame)
    write_mp4(path, frames, fps=FPS)
    return path


def make_checkpoint(folder: Path, size: str) -> Path:
    name, short_side = MODELS[size]
    path = folder / f"{size}.pt"
    if path.exists():
        return path
    torch.manual_seed(0)
    model = create_model(name)
    labels = {"dfer": list(get_label_set("dfew").classes),
              "sfer": list(get_label_set("affectnet7").classes)}  # fmt: skip
    meta = {"labels": labels, "frame_stride": 4,
            "preprocess": asdict(PreprocessSettings(short_side=short_side, frame_stride=1, framing="default", codec="jpeg"))}  # fmt: skip
    save_checkpoint(path, model, meta)
    return path


def run_predict(ckpt: Path, videos: list[Path], workers: int) -> tuple[float, list]:
    spec = load_inference_model(ckpt)
    items = discover_inputs(videos)
    start = time.perf_counter()
    results = predict_inputs(items, spec, PredictOptions(n_clips=2, crop="auto", timeline=False, window_stride=None, fps=None), device=torch.device("cpu"),
                             batch_size=16, workers=workers, progress=False)  # fmt: skip
    wall = time.perf_counter() - start
    failed = [r.prepared.reason for r in results if not r.prepared.ok]
    if failed:
        sys.exit(f"bench: inputs failed: {failed}")
    return wall, results


def face_seconds(ckpt: Path, videos: list[Path], strides: tuple[int, ...]) -> dict[int, float]:
    """Mean face seconds per video for each detect stride, alternating strides video by video so
    that machine noise hits them alike."""
    specs = {k: load_inference_model(ckpt, face_overrides={"detect_stride": k}) for k in strides}
    total = dict.fromkeys(strides, 0.0)
    for i, item in enumerate(discover_inputs(videos)):
        for k in strides if i % 2 == 0 else strides[::-1]:
            total[k] += prepare_input(i, item, specs[k], DETECT).face_s
    return {k: v / len(videos) for k, v in total.items()}


def peak_mb(fn) -> float:
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=2, help="10-second 720p videos to score")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each video")
    parser.add_argument("--models", default="tiny,base", help="comma-separated: tiny, base")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "unilearn-bench-predict",
                        help="where the generated videos and random checkpoints are kept")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    videos = [make_video(args.cache / f"scene720p_{args.seconds:g}s_{k}.mp4", args.seconds, k)
              for k in range(args.videos)]  # fmt: skip
    print(f"{len(videos)} videos, {args.seconds:g} s each, {WIDTH}x{HEIGHT} @ {FPS} fps, H.264 "
          f"(generated or cached in {time.perf_counter() - start:.1f} s); CPU, "
          f"{args.threads} torch threads, fp32")  # fmt: skip
    sizes = [s.strip() for s in args.models.split(",") if s.strip()]
    ckpts = {size: make_checkpoint(args.cache, size) for size in sizes}

    print(f"\n{'model':<6} {'workers':>7} {'videos/s':>9} {'decode s':>9} {'face s':>7} "
          f"{'model s':>8}   (per video; face = detect + track + crop + JPEG)")  # fmt: skip
    run_predict(ckpts[sizes[0]], videos[:1], 0)  # warm-up: detector, decoder, allocator
    rates = {}
    for size in sizes:
        for workers in (0, 1):
            wall, results = run_predict(ckpts[size], videos, workers)
            rates[size, workers] = len(videos) / wall
            mean = {k: statistics.mean(getattr(r.prepared, k) for r in results)
                    for k in ("decode_s", "face_s")}  # fmt: skip
            model_s = statistics.mean(r.model_s for r in results)
            print(f"{size:<6} {workers:>7} {len(videos) / wall:>9.3f} {mean['decode_s']:>9.2f} "
                  f"{mean['face_s']:>7.2f} {model_s:>8.2f}")  # fmt: skip
    for size in sizes:
        print(f"overlap speed-up ({size}): workers 1 / workers 0 = "
              f"{rates[size, 1] / rates[size, 0]:.2f}x")  # fmt: skip

    stride = FaceCropConfig().detect_stride
    face = face_seconds(ckpts[sizes[0]], videos, (1, stride))
    every, fifth = face[1], face[stride]
    print(f"\nface seconds per video: detect every frame {every:.2f}, every "
          f"{stride}th frame {fifth:.2f}; ratio {every / fifth:.2f}x")  # fmt: skip

    spec = load_inference_model(ckpts[sizes[0]])
    item = discover_inputs(videos[:1])[0]
    lazy = peak_mb(lambda: prepare_input(0, item, spec, DETECT))
    full = peak_mb(lambda: read_media(videos[0], "video"))
    print(f"peak memory per video: predict (lazy decode, crops kept) {lazy:.0f} MB, whole video "
          f"decoded (preprocess's read_media) {full:.0f} MB; ratio {full / lazy:.1f}x")  # fmt: skip
    print(f"\nbench total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
