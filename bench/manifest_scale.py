"""Benchmark: ingest at real scale. Prints absolute times and ratios against baselines measured in
the same run (the machine is shared and noisy).

1. DFEW with the official split statistics (11,697 clips, 58,485 fold rows; media are hardlinks to a
   few tiny JPEGs): `read_native("dfew")` vs the usual script (pandas per split file, one
   os.listdir per row, serial).
2. VoxCeleb2 frame counting per mp4: container metadata (what `unilearn manifest` does) vs decoding
   every frame; and the process pool (2 workers) vs one process.

    python bench/manifest_scale.py
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import av
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from official_tree import write_official_tree  # noqa: E402

from unilearn.data.native import read_native  # noqa: E402
from unilearn.data.native.voxceleb2 import _count_parallel, count_video_frames  # noqa: E402
from unilearn.data.synth import write_synthetic  # noqa: E402


def _baseline_dfew(root: Path) -> int:
    rows = 0
    for fold in range(1, 6):
        for split in ("train", "test"):
            df = pd.read_csv(root / f"EmoLabel_DataSplit/{split}(single-labeled)/set_{fold}.csv")
            for v in df.video_name:
                rows += len(os.listdir(root / "Clip/jpg_256" / f"{v:05d}")) > 0
    return rows


def _decode_count(path: str) -> int:
    with av.open(path) as c:
        return sum(1 for _ in c.decode(video=0))


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench_manifest_"))
    try:
        t = time.perf_counter()
        root = write_official_tree("dfew", work / "DFEW", frames=(3, 5))
        print(f"built official-scale DFEW tree in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        baseline_rows = _baseline_dfew(root)
        t_base = time.perf_counter() - t
        t = time.perf_counter()
        result = read_native("dfew", root, progress=False, workers=8)
        t_ours = time.perf_counter() - t
        assert len(result.rows) == baseline_rows == 58_485
        print(
            f"DFEW 58,485 rows: read_native {t_ours:.2f} s, baseline (pandas + listdir per row) {t_base:.2f} s, "
            f"ratio {t_base / t_ours:.1f}x"
        )

        write_synthetic(work / "synth", "tiny", progress=False)
        vids = sorted(str(p) for p in (work / "synth/VoxCeleb2/dev/mp4").rglob("*.mp4"))
        vids = [v for v in vids if count_video_frames(v)[0] > 0] * 50
        t = time.perf_counter()
        for v in vids[:100]:
            _decode_count(v)
        t_decode = (time.perf_counter() - t) / 100
        t = time.perf_counter()
        for v in vids:
            count_video_frames(v)
        t_meta = (time.perf_counter() - t) / len(vids)
        print(
            f"VoxCeleb2 frame count per mp4 (16 frames, 64x64): metadata {t_meta * 1e3:.2f} ms, full decode "
            f"{t_decode * 1e3:.2f} ms, ratio {t_decode / t_meta:.1f}x; 1,092,009 files at metadata speed on one core: "
            f"{1_092_009 * t_meta / 60:.0f} min"
        )
        t = time.perf_counter()
        _count_parallel(vids, workers=1, progress=False)
        t1 = time.perf_counter() - t
        t = time.perf_counter()
        _count_parallel(vids, workers=2, progress=False)
        t2 = time.perf_counter() - t
        print(
            f"VoxCeleb2 {len(vids)} mp4s: 1 process {t1:.2f} s, pool of 2 {t2:.2f} s, speed-up {t1 / t2:.2f}x "
            f"({os.cpu_count()} cores, shared)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
