"""A tiny clip store built in tests: DFEW-like frame folders (2 folds), AffectNet-like images
(8 classes, contempt included) and VoxCeleb2-like mp4s, preprocessed at a small short side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _media import manifest_frame, manifest_row, moving_pattern, write_frames, write_mp4
from PIL import Image

from unilearn.data.preprocess import PreprocessSettings, preprocess

SHORT_SIDE = 40


def build_tiny_store(root: Path, n_dfer: int = 12, n_images: int = 40, n_videos: int = 4) -> Path:
    src, manifests, store = root / "src", root / "manifests", root / "store"
    manifests.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_dfer):
        clip = write_frames(src / "dfew" / f"{i:05d}", moving_pattern(6 + 3 * i, 48, seed=i))
        for fold in (1, 2):
            split = "test" if i % 2 == fold - 1 and i % 3 == 0 else "train"
            rows.append(
                manifest_row("dfew", f"{i:05d}", clip, "frames", i % 7, 6 + 3 * i, split, fold)
            )
    manifest_frame(rows).to_parquet(manifests / "dfew.parquet")
    rows = []
    rng = np.random.default_rng(0)
    for i in range(n_images):
        path = src / "affectnet" / f"{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (56, 48, 3), dtype=np.uint8)).save(path)
        rows.append(
            manifest_row(
                "affectnet",
                str(i),
                path,
                "image",
                i % 8,
                1,
                "train" if i < n_images - 8 else "test",
            )
        )
    manifest_frame(rows).to_parquet(manifests / "affectnet.parquet")
    rows = []
    for i in range(n_videos):
        path = write_mp4(
            src / "voxceleb2" / f"id{i}" / "yt" / "00001.mp4", moving_pattern(20, 48, seed=100 + i)
        )
        rows.append(manifest_row("voxceleb2", f"id{i}/yt/00001", path, "video", -1, 20, "train"))
    manifest_frame(rows).to_parquet(manifests / "voxceleb2.parquet")
    for name in ("dfew", "affectnet", "voxceleb2"):
        preprocess(
            manifests / f"{name}.parquet",
            store,
            PreprocessSettings(short_side=SHORT_SIDE),
            workers=0,
            progress=False,
        )
    return store
