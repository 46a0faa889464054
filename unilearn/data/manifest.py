"""Manifests: a native reader's answer (`unilearn.data.native.read_native`) -> the Parquet
manifest `DIR/DATASET.parquet` (one row per clip per (fold, split), as the official split files
list them) and `DIR/DATASET.quarantine.parquet` (every row left out, with the reason naming the
file, the line and the problem), with fixed dtypes; and the counts `unilearn manifest` prints.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from unilearn.atomic import write_parquet
from unilearn.data.native import COLUMNS, NativeRead
from unilearn.data.synth import read_summary
from unilearn.layout import QUARANTINE, manifest_path, sidecar_path

_DTYPES = {
    "dataset": "string",
    "clip_id": "string",
    "path": "string",
    "media": "string",
    "label": "int16",
    "label_name": "string",
    "fold": "Int8",
    "split": "string",
    "n_frames": "int32",
    "source_file": "string",
}
_EXTRA_DTYPES = {
    "face_x": "int32",
    "face_y": "int32",
    "face_width": "int32",
    "face_height": "int32",
    "valence": "float32",
    "face_cropped": "boolean",
    "arousal": "float32",
    "reason_code": "string",
    "reason": "string",
}


def to_frame(rows: list[dict], quarantine: bool = False) -> pd.DataFrame:
    """Rows as a DataFrame with the manifest dtypes (an empty list still has every column)."""
    columns = list(COLUMNS)
    extra = [c for c in _EXTRA_DTYPES if any(c in r for r in rows[:1000])] if rows else []
    if quarantine:
        extra = [c for c in extra if c not in ("reason_code", "reason")] + ["reason_code", "reason"]
    df = pd.DataFrame(rows, columns=columns + extra)
    for col in columns + extra:
        dtype = _DTYPES.get(col) or _EXTRA_DTYPES[col]
        if dtype in ("int16", "int32") and df[col].isna().any():
            df[col] = df[col].fillna(-1)
        df[col] = df[col].astype(dtype)
    return df


def write_manifest(result: NativeRead, out: str | Path) -> tuple[Path, Path]:
    """Write the manifest and its quarantine for `result`; returns both paths."""
    mark_synthetic_face_crops(result, result.root)
    out = Path(out)
    manifest, quarantine = (
        manifest_path(out, result.dataset),
        sidecar_path(manifest_path(out, result.dataset), QUARANTINE),
    )
    write_parquet(to_frame(result.rows), manifest)
    write_parquet(to_frame(result.quarantine, quarantine=True), quarantine)
    return manifest, quarantine


def mark_synthetic_face_crops(result: NativeRead, root: str | Path) -> None:
    """The bundled synthetic trees are face crops in every dataset (their MAFW too, unlike the
    real one): say so per row (`face_cropped`), so preprocess resizes them as before."""
    summary = read_summary(root)
    if summary and summary.get("synthetic"):
        for row in result.rows:
            row["face_cropped"] = True


def summarize(result: NativeRead) -> str:
    """Counts per fold/split and per quarantine reason, and the split-file findings."""
    lines = [
        f"{result.dataset}: {result.rows_in} rows in = {len(result.rows)} kept + {len(result.quarantine)} quarantined (root {result.root})"
    ]
    per_split = Counter((r["fold"], r["split"]) for r in result.rows)
    for (fold, split), n in sorted(
        per_split.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1] != "train")
    ):
        where = f"fold {fold} {split}" if fold is not None else split
        lines.append(f"  {where:<14} {n:>8} rows")
    per_reason = Counter(q["reason_code"] for q in result.quarantine)
    for code, n in per_reason.most_common():
        example = next(q["reason"] for q in result.quarantine if q["reason_code"] == code)
        lines.append(f"  quarantined {code:<18} {n:>6}  e.g. {example}")
    for f in result.findings:
        lines.append(f"  SPLIT FILES DISAGREE [{f.code}]: {f.message}")
    return "\n".join(lines)
