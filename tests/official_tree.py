"""Test helper: a native-layout tree whose split files match the OFFICIAL split statistics exactly
(unilearn/doctor/official_split_counts.json), with cheap media: every clip folder holds a few
hardlinks to a handful of shared tiny face JPEGs, so 39k clip folders take seconds."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import cv2
import numpy as np

from unilearn.catalogue import get_label_set
from unilearn.data.synth_clips import plan_clip, render_clip
from unilearn.doctor.official import official_counts

SCENES = ("CrimeDrama", "DailyLife", "Interview", "TalkShow")


def _face_pool(pool: Path, n: int = 6, size: int = 64) -> list[Path]:
    pool.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(n):
        rng = np.random.default_rng(k)
        plan = plan_clip(
            rng,
            ("happy", "sad", "neutral", "angry", "surprise", "fear")[k],
            size,
            size,
            (0.27, 0.33),
        )
        rgb = list(render_clip(rng, plan, 2, size, size))[-1]
        path = pool / f"face_{k}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        files.append(path)
    return files


def _fill(folder: Path, pool: list[Path], n_frames: int) -> None:
    folder.mkdir(parents=True)
    for i in range(n_frames):
        os.link(pool[i % len(pool)], folder / f"{i + 1:05d}.jpg")


def clip_plan(dataset: str) -> list[tuple[str, int | None]]:
    """(class name, test fold or None) per clip, so that every official split count is met."""
    counts = official_counts()[dataset]
    plan = []
    if dataset == "ferv39k":
        for split in ("train", "test"):
            for name, n in counts[f"official/{split}"].items():
                plan += [(name, 1 if split == "test" else None)] * n
    else:
        for fold in range(1, 6):
            for name, n in counts[f"fold{fold}/test"].items():
                plan += [(name, fold)] * n
    random.Random(0).shuffle(plan)
    return plan


def write_official_tree(dataset: str, root: Path, frames: tuple[int, int] = (3, 5)) -> Path:
    """Write `dataset` (dfew, mafw or ferv39k) at `root` with the official split statistics."""
    pool = _face_pool(root / ".pool")
    labels = get_label_set(dataset)
    plan = clip_plan(dataset)
    span = frames[1] - frames[0] + 1
    if dataset == "dfew":
        rows = {}
        for i, (name, test_fold) in enumerate(plan, start=1):
            _fill(root / "Clip/jpg_256" / f"{i:05d}", pool, frames[0] + i % span)
            rows[i] = (labels.classes.index(name) + 1, test_fold)
        for fold in range(1, 6):
            for split in ("train", "test"):
                lines = ["video_name,label"] + [
                    f"{i:05d},{y}" for i, (y, f) in rows.items() if (f == fold) == (split == "test")
                ]
                path = root / f"EmoLabel_DataSplit/{split}(single-labeled)/set_{fold}.csv"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("\n".join(lines) + "\n")
    elif dataset == "mafw":
        rows = {}
        for i, (name, test_fold) in enumerate(plan, start=1):
            _fill(root / "data/frames" / f"{i:05d}", pool, frames[0] + i % span)
            rows[i] = (name, test_fold)
        for fold in range(1, 6):
            for split in ("train", "test"):
                lines = [
                    f"{i:05d}.mp4 {y}"
                    for i, (y, f) in rows.items()
                    if (f == fold) == (split == "test")
                ]
                path = root / f"split/single/no_caption/set_{fold}/{split}.txt"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("\n".join(lines) + "\n")
    elif dataset == "ferv39k":
        lines = {"train": [], "test": []}
        counters: dict[tuple[str, str], int] = {}
        for i, (name, test) in enumerate(plan):
            scene, emotion = SCENES[i % len(SCENES)], name.capitalize()
            counters[scene, emotion] = counters.get((scene, emotion), 0) + 1
            clip = f"{scene}/{emotion}/{counters[scene, emotion]:04d}"
            _fill(root / "2_ClipsforFaceCrop" / clip, pool, frames[0] + i % span)
            lines["test" if test else "train"].append(f"{clip} {emotion}")
        for split in ("train", "test"):
            path = root / f"4_setups/All_scenes/{split}_All.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines[split]) + "\n")
    else:
        raise ValueError(f"no official statistics for {dataset}")
    return root


def linked_copy(src: Path, dst: Path, media_dir: str, skip: tuple[str, ...] = ()) -> Path:
    """A new root whose split files are real copies (editable) and whose media folder holds one
    symlink per clip of `src` (except `skip`): mistakes can be made without touching `src`."""
    dst.mkdir(parents=True)
    top = media_dir.split("/")[0]
    for child in src.iterdir():
        if child.name in (top, ".pool"):
            continue
        if child.is_dir():
            shutil.copytree(child, dst / child.name)
        else:
            shutil.copy2(child, dst / child.name)
    if not skip:  # nothing to leave out: share the whole media folder
        os.symlink(src / top, dst / top)
        return dst
    media = dst / media_dir
    media.mkdir(parents=True)
    for clip in (src / media_dir).iterdir():
        if clip.name not in skip:
            os.symlink(clip, media / clip.name)
    return dst
