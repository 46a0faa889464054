"""`unilearn doctor DATASET --root DIR`: is this copy of the dataset the one the paper used?

Reads the native tree with the same readers as `unilearn manifest`, compares the split files with
the official split statistics (clips per fold, split and class), inspects the media on a sample
(frames per clip and the DFEW variant, frame size, unreadable or empty clips, one large face per
frame), says which framing the store gets (and, with --store, holds), prints a verdict first and then the details, and writes them as Markdown with --report.
Exit status 1 when the data would not reproduce the paper's protocol. The bundled synthetic data
(`unilearn synth`, recognised by its synth.json) passes as what it is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from unilearn.atomic import write_text
from unilearn.data.native import READERS
from unilearn.data.worker_pool import add_workers_argument
from unilearn.doctor import ERROR
from unilearn.doctor.diagnose import diagnose, format_markdown, format_text
from unilearn.launch.resources import add_cpu_launcher_arguments, submit_cpu_stage


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=sorted(READERS), help="which dataset to check")
    parser.add_argument(
        "--root", required=True, type=Path, help="the dataset's own top folder (e.g. .../DFEW)"
    )
    parser.add_argument(
        "--sample", type=int, default=50, help="clips whose media are read (0 = all)"
    )
    parser.add_argument(
        "--face-clips",
        type=int,
        default=12,
        help="sampled clips the face detector looks at (3 frames each)",
    )
    parser.add_argument(
        "--detector",
        default="auto",
        choices=["auto", "mtcnn", "haar"],
        help="face detector backend (as unilearn preprocess)",
    )
    parser.add_argument(
        "--framing",
        default="auto",
        help="the framing preprocess will use (as its --framing; auto = the authors')",
    )
    parser.add_argument(
        "--store",
        type=Path,
        default=None,
        help="a clip store: say which framing its settings.json records for this dataset",
    )
    parser.add_argument(
        "--report", type=Path, default=None, help="write the report as Markdown here"
    )
    parser.add_argument("--seed", type=int, default=0, help="which clips are sampled")
    add_workers_argument(
        parser, "parallel workers for reading the tree (threads; processes for VoxCeleb2 videos)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_cpu_launcher_arguments(parser)


def main(args: argparse.Namespace) -> int:
    rc = submit_cpu_stage(args)
    if rc is not None:
        return rc
    verdict, findings, result = diagnose(
        args.dataset,
        args.root,
        sample=args.sample,
        face_clips=args.face_clips,
        detector=args.detector,
        seed=args.seed,
        progress=not args.no_progress,
        workers=args.workers,
        store=args.store,
        framing=args.framing,
    )
    print(format_text(verdict, findings))
    if args.report is not None:
        write_text(args.report, format_markdown(args.dataset, args.root, verdict, findings, result))
        print(f"\nreport written to {args.report}")
    return 1 if any(f.severity == ERROR for f in findings) else 0
