"""`unilearn synth`: write all five datasets as synthetic, learnable data in their NATIVE layouts.

DIR/DFEW, DIR/MAFW, DIR/FERV39K, DIR/AffectNet and DIR/VoxCeleb2 are laid out exactly as the
datasets are distributed (split files included), so `unilearn manifest` reads them with the same
readers as the real data. DIR/raw_videos holds uncropped scene videos (a face in a larger scene, and
one without a face) for the face-clip stage and `unilearn predict`. The demo preset also plants a
few broken inputs (an empty frame folder, a split row naming a missing clip, a label outside the
class set, a truncated mp4, AffectNet's non-emotion codes) so the quarantine path always runs.
DIR/synth.json is written last: its presence means the tree is complete.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unilearn.data.synth import PRESETS, write_synthetic


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", required=True, type=Path, help="directory to write the datasets into"
    )
    parser.add_argument("--preset", default="demo", choices=sorted(PRESETS), help="how much data")
    parser.add_argument("--seed", default=0, type=int, help="same seed -> byte-identical files")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    try:
        summary = write_synthetic(args.out, args.preset, args.seed, progress=not args.no_progress)
    except (FileExistsError, ValueError) as err:
        print(f"unilearn synth: {err}", file=sys.stderr)
        return 1
    counts = ", ".join(f"{d} {s['rows']} rows" for d, s in summary["datasets"].items())
    print(f"wrote synthetic datasets ({args.preset}, seed {args.seed}) to {args.out}: {counts}")
    print(
        f"broken inputs planted: {len(summary['broken'])}; raw videos: {len(summary['raw_videos'])}"
    )
    return 0
