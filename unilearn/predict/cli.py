"""`unilearn predict`: run a fine-tuned checkpoint on raw videos, frame folders and images.

Each input is decoded, its face found and cropped exactly as `unilearn preprocess` stores clips
(same functions, the model's store settings), sampled into test clips as `unilearn evaluate` does
(n clips, softmax averaged) and scored with the DFER head (videos, frame folders) or the SFER head
(images, when the model has one). Our checkpoints carry everything needed (model, label names,
input size, stride, normalisation); for an imported VideoMAE / MAE-DFER checkpoint name the model
and the label set: `--model vit_base_patch16_160 --labels dfew`.

Writes one row per input (failed ones with their reason) to --out (.parquet or .csv) and prints
a summary. With --timeline, per-window probabilities along each video go to OUT.timeline.parquet
(or .csv), and --plot draws them into OUT.timeline/<input>.png. Exit status 1 only if no input
could be processed (2: unusable checkpoint or arguments).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unilearn.predict.inputs import CROP_MODES, FOLDER_RULES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, metavar="CHECKPOINT",
                        help="fine-tuned checkpoint: `unilearn finetune` RUN/checkpoint.pt, or a "
                             "VideoMAE / MAE-DFER one with --model and --labels")  # fmt: skip
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="video files (mp4 avi mkv mov webm m4v), frame folders, images (jpg "
                             "png bmp webp), or folders of them (searched recursively)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("predictions.parquet"),
                        metavar="PREDICTIONS.parquet|csv", help="per-input table")  # fmt: skip
    parser.add_argument("--clips", type=int, default=2,
                        help="test clips per video, uniformly spaced, softmax averaged (paper: 2)")  # fmt: skip
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda runs with bf16 autocast")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=16, help="clips per forward pass")
    parser.add_argument("--workers", type=int, default=1,
                        help="threads decoding and cropping the next inputs while the model runs "
                             "(0 = one after another in this thread)")  # fmt: skip
    parser.add_argument("--crop", choices=CROP_MODES, default="auto",
                        help="detect: crop the tracked face; none: resize only (material already "
                             "face-cropped, e.g. DFEW frames); auto: detect, but resize only when "
                             "the face already fills the frame")  # fmt: skip
    parser.add_argument("--folders", choices=FOLDER_RULES, default="auto",
                        help="a folder of images is one clip (frames) or separate images; auto: "
                             "frames when all file names differ only in digits (00001.jpg, ...)")  # fmt: skip

    imported = parser.add_argument_group("imported checkpoints (VideoMAE / MAE-DFER: no meta)")
    imported.add_argument("--model", default=None, metavar="NAME",
                          help="registered model to load the weights into, e.g. "
                               "vit_base_patch16_160 (`unilearn params --help` lists them)")  # fmt: skip
    imported.add_argument("--labels", default=None, metavar="SET|a,b,c",
                          help="class names of the head, in logit order: a label set (dfew, "
                               "ferv39k, mafw, affectnet7, affectnet) or a comma-separated list")  # fmt: skip

    timeline = parser.add_argument_group("timeline (per-window probabilities along a video)")
    timeline.add_argument("--timeline", action="store_true",
                          help="also score every window (one clip) along each video -> "
                               "OUT.timeline.parquet|csv")  # fmt: skip
    timeline.add_argument("--window-stride", default=None, metavar="FRAMES|SECONDSs",
                          help="window step: frames (12) or seconds (0.5s); default half a window")  # fmt: skip
    timeline.add_argument("--plot", action="store_true",
                          help="draw each video's timeline into OUT.timeline/<input>.png "
                               "(implies --timeline)")  # fmt: skip
    timeline.add_argument("--fps", type=float, default=None,
                          help="frame rate of frame folders, for times and --window-stride in "
                               "seconds (videos know theirs)")  # fmt: skip

    pre = parser.add_argument_group(
        "preprocessing (default: the checkpoint's store settings, see docs/predict.md)"
    )
    pre.add_argument("--short-side", type=int, default=None,
                     help="pixels of the face clip's short side before the centre crop")  # fmt: skip
    pre.add_argument("--jpeg-quality", type=int, default=None,
                     help="JPEG round trip as the store does (0 = none)")  # fmt: skip
    pre.add_argument("--detector", choices=("auto", "mtcnn", "haar"), default=None,
                     help="face detector backend")  # fmt: skip
    pre.add_argument("--detect-stride", type=int, default=None,
                     help="run the detector every N frames and track in between")  # fmt: skip
    pre.add_argument("--frame-stride", type=int, default=None,
                     help="temporal stride of test clips (ours: from the checkpoint; imported: 4)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    import torch

    from unilearn.models.checkpoint import CheckpointError
    from unilearn.predict.inputs import discover_inputs
    from unilearn.predict.model import load_inference_model
    from unilearn.predict.output import (
        TABLE_FORMATS,
        predictions_table,
        summary,
        timeline_table,
        write_table,
    )
    from unilearn.predict.pipeline import PredictOptions
    from unilearn.predict.runner import predict_inputs
    from unilearn.predict.timeline import parse_window_stride

    def usage_error(message: str) -> int:
        print(f"unilearn predict: error: {message}", file=sys.stderr)
        return 2

    if args.out.suffix.lower() not in TABLE_FORMATS:
        return usage_error(f"--out {args.out}: expected a .parquet or .csv file")
    if args.clips < 1 or args.batch_size < 1:
        return usage_error("--clips and --batch-size must be at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        return usage_error("--device cuda: no CUDA device is available (use --device cpu)")
    try:
        window_stride = parse_window_stride(args.window_stride)
    except ValueError as exc:
        return usage_error(str(exc))
    try:
        spec = load_inference_model(
            args.checkpoint,
            model_name=args.model,
            labels=args.labels,
            frame_stride=args.frame_stride,
            overrides={"short_side": args.short_side, "jpeg_quality": args.jpeg_quality,
                       "detector": args.detector},
            face_overrides={"detect_stride": args.detect_stride},
        )  # fmt: skip
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        return usage_error(str(exc))
    device = torch.device(args.device)
    spec.model.to(device).eval()

    items = discover_inputs(args.inputs, args.folders)
    if not items:
        return usage_error("no inputs")
    timeline = args.timeline or args.plot
    options = PredictOptions(n_clips=args.clips, crop=args.crop, timeline=timeline,
                             window_stride=window_stride, fps=args.fps)  # fmt: skip
    results = predict_inputs(items, spec, options, device=device, batch_size=args.batch_size,
                             workers=args.workers, progress=not args.no_progress)  # fmt: skip

    written = [args.out]
    write_table(predictions_table(results, spec), args.out)
    if timeline:
        stem = args.out.with_suffix("")
        table = timeline_table(results, spec)
        path = stem.with_name(stem.name + ".timeline" + args.out.suffix)
        write_table(table, path)
        written.append(path)
        if args.plot and len(table):
            written += _plots(table, results, spec, stem.with_name(stem.name + ".timeline"))
    print(summary(results, spec, written))
    return 0 if any(s.prepared.ok for s in results) else 1


def _plots(table, results, spec, folder: Path) -> list[Path]:
    from unilearn.predict.output import class_names
    from unilearn.predict.timeline import plot_name, plot_timeline

    used: set[str] = set()
    paths = []
    for s in results:
        rows = table[table["input"] == s.prepared.item.path]
        if rows.empty:
            continue
        name = plot_name(s.prepared.item.path, used)
        title = f"{Path(s.prepared.item.path).name} - {spec.model_name} ({s.prepared.head})"
        paths.append(plot_timeline(rows, class_names(spec, s.prepared.head), folder / name, title))
    return paths
