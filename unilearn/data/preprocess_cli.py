"""Face-clip preprocessing: decode each clip of a manifest, find and track the face where needed,
crop it, resize to the store's short side and write the clip store.

Writes STORE/DATASET.parquet (manifest rows + store_key, stored n_frames, height, width) and
STORE/DATASET.quarantine.parquet (rows of clips that failed, with the reason). Each clip is stored
once even when several folds list it. Parallel over clips; resumable: a re-run (also after a kill)
does only clips not yet in the store's journals. One bad clip never stops the run.

Face detection (`--detect auto`): datasets distributed face-cropped (DFEW jpg_256, FERV39K, MAFW
frames, VoxCeleb2 face-tracked mp4, AffectNet) are only resized; any other dataset, or rows whose
optional `face_cropped` column is false, go through detection + tracking. Rows with AffectNet's
annotation box (`face_x`, `face_y`, `face_width`, `face_height`) are cropped to that box.
MAFW's `data/frames` are full scene frames (its authors ship face boxes and landmarks beside them,
and UniLearn's authors cropped them with MTCNN first), so MAFW is detected and cropped too.

Shards (`--shard I/N`): the clips are split by a hash of their clip id into N parts that separate
jobs store at the same time, each resumable; a finished part leaves `DATASET/parts/*.done.json`,
and `--merge N` writes the store tables once every part is done. The result equals one unsharded
run: the same records, in other shard files. `--frame-stride K` keeps every K-th source frame
only (for data that pre-training alone reads, at a multiple of K); `settings.json` records it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unilearn.catalogue import FRAMING_ROWS, STORE_CODECS
from unilearn.config.data import StoreConfig
from unilearn.data.face import FaceCropConfig
from unilearn.data.face_clip import PreprocessSettings
from unilearn.data.preprocess import ShardFailed, ShardsIncomplete, merge, preprocess
from unilearn.data.worker_pool import add_workers_argument
from unilearn.launch.resources import add_cpu_launcher_arguments, submit_cpu_stage


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--manifest",
        required=True,
        type=Path,
        help="manifest Parquet written by `unilearn manifest` (DATASET.parquet)",
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="store directory; writes OUT/DATASET.parquet, OUT/DATASET.quarantine.parquet and OUT/DATASET/ shards",
    )
    parser.add_argument(
        "--short-side",
        type=int,
        default=StoreConfig().short_side,
        help="stored frames' short side in pixels (the config's data.store.short_side, "
        "%(default)s for 160 crops; the demo's 40 for 32)",
    )
    add_workers_argument(parser, "worker processes (0 = in this process)")
    parser.add_argument(
        "--detect",
        choices=("auto", "always", "never"),
        default=PreprocessSettings.detect,
        help="face detection: auto = only datasets not distributed face-cropped",
    )
    parser.add_argument(
        "--detector",
        choices=("auto", "mtcnn", "haar"),
        default=PreprocessSettings.detector,
        help="face detector backend (auto = MTCNN, Haar if MTCNN is unavailable)",
    )
    parser.add_argument(
        "--detect-stride",
        type=int,
        default=FaceCropConfig.detect_stride,
        help="run the detector every N frames and track in between (default %(default)s)",
    )
    parser.add_argument(
        "--face-scale",
        type=float,
        default=FaceCropConfig.scale,
        help="crop side as a multiple of the detected face box (default %(default)s)",
    )
    parser.add_argument(
        "--smooth-window",
        type=int,
        default=FaceCropConfig.smooth_window,
        help="frames of temporal smoothing of the face box (default %(default)s)",
    )
    parser.add_argument(
        "--framing",
        choices=("auto", "default", *sorted(FRAMING_ROWS)),
        default="auto",
        help="how frames are framed: auto = the authors' framing of the dataset (voxceleb2 "
        "authors_region, mafw authors_mtcnn, affectnet aligned_5point), default = ours on every "
        "row; recorded in the store's settings.json (docs/data.md)",
    )
    parser.add_argument(
        "--jpeg-quality",
        type=int,
        default=PreprocessSettings.jpeg_quality,
        help="JPEG quality of stored frames (default %(default)s)",
    )
    parser.add_argument(
        "--codec",
        choices=STORE_CODECS,
        default=STORE_CODECS[0],
        help="how frames are stored: jpeg = each frame alone, h264 = closed groups of 4 phase "
        "streams (every frame in ~0.7x the bytes of every 4th frame as JPEG, ~1.25x its read time "
        "at stride 4; docs/data-loading.md); recorded in settings.json",
    )
    parser.add_argument(
        "--frame-stride",
        type=int,
        default=1,
        help="keep every K-th source frame only (data read by pre-training alone, at a multiple of K)",
    )
    parser.add_argument(
        "--shard",
        type=parse_shard,
        default=None,
        metavar="I/N",
        help="store only part I of N (clips split by a hash of their id; parts run side by side); "
        "writes DATASET/parts/ markers, not the tables: run --merge N when all are done",
    )
    parser.add_argument(
        "--merge",
        type=int,
        default=None,
        metavar="N",
        help="write the store tables from the N finished parts of a sharded run (no clip work)",
    )
    parser.add_argument(
        "--retry-failed", action="store_true", help="retry clips quarantined by an earlier run"
    )
    parser.add_argument("--limit", type=int, default=None, help="process at most N new clips this run (resume later)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    add_cpu_launcher_arguments(parser)


def parse_shard(text: str) -> tuple[int, int]:
    """`I/N` (1 <= I <= N) -> (I, N)."""
    i, sep, n = text.partition("/")
    if not sep or not i.isdigit() or not n.isdigit() or not 1 <= int(i) <= int(n):
        raise argparse.ArgumentTypeError(f"--shard {text!r}: expected I/N with 1 <= I <= N")
    return int(i), int(n)


def main(args: argparse.Namespace) -> int:
    rc = submit_cpu_stage(args)
    if rc is not None:
        return rc
    if args.merge is not None:
        try:
            print(merge(args.manifest, args.out, args.merge).report())
        except ShardsIncomplete as err:
            print(f"unilearn preprocess: {err}", file=sys.stderr)
            return 1
        return 0
    settings = PreprocessSettings(
        short_side=args.short_side,
        jpeg_quality=args.jpeg_quality,
        detect=args.detect,
        detector=args.detector,
        face=FaceCropConfig(
            detect_stride=args.detect_stride,
            scale=args.face_scale,
            smooth_window=args.smooth_window,
        ),
        frame_stride=args.frame_stride,
        framing=args.framing,
        codec=args.codec,
    )
    try:
        summary = preprocess(
            args.manifest,
            args.out,
            settings,
            workers=args.workers,
            retry_failed=args.retry_failed,
            limit=args.limit,
            progress=not args.no_progress,
            shard=args.shard,
        )
    except ShardFailed as err:
        print(f"unilearn preprocess: {err}", file=sys.stderr)
        return 1
    print(summary.report())
    return 0
