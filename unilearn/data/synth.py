"""Synthetic, learnable copies of all five datasets in their native layouts (`write_synthetic`),
and the summary that marks a tree as synthetic (`read_summary`).

DIR/DFEW, DIR/MAFW, DIR/FERV39K, DIR/AffectNet and DIR/VoxCeleb2 are laid out exactly as the
datasets are distributed (split files included; `unilearn.data.synth_datasets` writes them through
the readers' layout), so `unilearn manifest` reads them with the same readers as the real data.
DIR/raw_videos holds uncropped scene videos for the face-clip stage and `unilearn predict`. A
preset may plant a few broken inputs so the quarantine path always runs. DIR/synth.json is
written last: its presence means the tree is complete. The same seed gives byte-identical files.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from unilearn import __version__
from unilearn.atomic import write_text
from unilearn.data.synth_datasets import PRESETS, RAW_VIDEOS, ROOTS, DatasetWriter
from unilearn.layout import SYNTH_SUMMARY

SUMMARY = SYNTH_SUMMARY


def write_synthetic(
    out: str | Path, preset: str = "demo", seed: int = 0, progress: bool = True
) -> dict:
    """Write every dataset under `out` and return the summary that is saved as `out/synth.json`."""
    if preset not in PRESETS:
        raise ValueError(f"unknown synth preset {preset!r}; expected one of {sorted(PRESETS)}")
    p = PRESETS[preset]
    out = Path(out)
    _prepare(out)
    writer = DatasetWriter(out, p, seed)
    total = writer.total_units()
    with tqdm(
        total=total, desc=f"synth {preset}", unit="clip", file=sys.stderr, disable=not progress
    ) as bar:
        writer.bar = bar
        datasets = {
            "dfew": writer.dfew(),
            "mafw": writer.mafw(),
            "ferv39k": writer.ferv39k(),
            "affectnet": writer.affectnet(),
            "voxceleb2": writer.voxceleb2(),
        }
        raw = writer.raw_videos()
    summary = {
        "generator": f"unilearn {__version__} synth",
        "synthetic": True,
        "preset": preset,
        "seed": seed,
        "settings": asdict(p),
        "roots": ROOTS,
        "datasets": datasets,
        "broken": writer.broken,
        "raw_videos": raw,
    }
    write_text(out / SUMMARY, json.dumps(summary, indent=1, sort_keys=True) + "\n")
    return summary


def read_summary(root: str | Path) -> dict | None:
    """The synth summary of a synthetic tree, found at `root` or its parent (a dataset root)."""
    root = Path(root)
    for candidate in (root / SUMMARY, root.parent / SUMMARY):
        if candidate.is_file():
            with open(candidate, encoding="utf-8") as f:
                return json.load(f)
    return None


def _prepare(out: Path) -> None:
    """Start from a clean tree; refuse to write over a directory that synth did not make."""
    if out.exists() and any(out.iterdir()):
        if not (out / SUMMARY).exists() and not all(
            child.name in {*ROOTS.values(), RAW_VIDEOS} for child in out.iterdir()
        ):
            raise FileExistsError(
                f"{out} is not empty and holds no {SUMMARY}: refusing to write synthetic data over it"
            )
        (out / SUMMARY).unlink(
            missing_ok=True
        )  # first, so an interrupted re-run is never "complete"
        for name in {*ROOTS.values(), RAW_VIDEOS}:
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
