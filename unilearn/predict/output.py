"""The tables and the summary `unilearn predict` writes.

Predictions: one row per input, failed ones included: `input`, `kind`, `status` (ok|failed),
`reason_code`, `reason`, `head`, `top_label`, `top_prob`, one `prob_<class>` column per class,
`n_frames`, `n_clips`, `face_detections`, `crop`, `notes`, `decode_s`, `face_s`, `model_s`,
`model`, `checkpoint`, `checkpoint_sha256`, `config_hash`. Class names are the checkpoint's,
spelt canonically (`anger` -> `angry`, `happiness` -> `happy`), so images (SFER head) and videos
(DFER head) share columns; a class the input's head lacks is empty (NaN).
Timeline: one row per window: `input`, `window`, `start_frame`, `end_frame`, `start_s`, `end_s`,
`head`, `top_label`, `top_prob`, `prob_<class>`...
Parquet or CSV by the file's extension; written atomically.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from unilearn.atomic import atomic_open, write_parquet
from unilearn.catalogue import TASKS, canonical_emotion
from unilearn.predict.model import InferenceModel
from unilearn.predict.runner import Scored
from unilearn.predict.timeline import window_row

TABLE_FORMATS = (".parquet", ".csv")


def class_names(spec: InferenceModel, head: str) -> list[str]:
    return [canonical_emotion(c) for c in spec.labels[head]]


def all_classes(spec: InferenceModel) -> list[str]:
    """Every class of every head, DFER's first, each once."""
    names: list[str] = []
    for head in TASKS:
        for c in class_names(spec, head) if spec.has_head(head) else []:
            if c not in names:
                names.append(c)
    return names


def _probs(spec: InferenceModel, head: str, probs: np.ndarray, classes: list[str]) -> dict:
    mine = dict(zip(class_names(spec, head), probs.tolist()))
    return {f"prob_{c}": mine.get(c, math.nan) for c in classes}


def predictions_table(results: list[Scored], spec: InferenceModel) -> pd.DataFrame:
    classes = all_classes(spec)
    rows = []
    for s in results:
        p = s.prepared
        row = {
            "input": p.item.path,
            "kind": p.item.kind,
            "status": "ok" if p.ok else "failed",
            "reason_code": p.reason_code,
            "reason": p.reason,
            "head": p.head,
            "top_label": "",
            "top_prob": math.nan,
            **{f"prob_{c}": math.nan for c in classes},
        }
        if p.ok:
            names = class_names(spec, p.head)
            top = int(np.argmax(s.probs))
            row.update(top_label=names[top], top_prob=float(s.probs[top]))
            row.update(_probs(spec, p.head, s.probs, classes))
        row.update(
            n_frames=p.n_frames,
            n_clips=len(p.clips) if p.ok else 0,
            face_detections=p.face_detections,
            crop=p.crop,
            notes="; ".join(p.notes),
            decode_s=round(p.decode_s, 4),
            face_s=round(p.face_s, 4),
            model_s=round(s.model_s, 4),
            model=spec.model_name,
            checkpoint=spec.checkpoint,
            checkpoint_sha256=spec.checkpoint_sha256,
            config_hash=spec.config_hash or "",
        )
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    for col in ("n_frames", "n_clips", "face_detections"):
        table[col] = table[col].astype("int32")
    return table


def timeline_table(results: list[Scored], spec: InferenceModel) -> pd.DataFrame:
    classes = all_classes(spec)
    rows = []
    for s in results:
        p = s.prepared
        if not p.ok or s.window_probs is None:
            continue
        names = class_names(spec, p.head)
        for w, (window, probs) in enumerate(zip(p.windows, s.window_probs)):
            top = int(np.argmax(probs))
            rows.append({
                "input": p.item.path, "window": w, **window_row(window, p.fps), "head": p.head,
                "top_label": names[top], "top_prob": float(probs[top]),
                **_probs(spec, p.head, probs, classes),
            })  # fmt: skip
    return pd.DataFrame(rows)


def write_table(table: pd.DataFrame, path: Path) -> None:
    if path.suffix.lower() == ".csv":
        with atomic_open(path, "w", encoding="utf-8", newline="") as f:
            table.to_csv(f, index=False)
    else:
        write_parquet(table, path)


def summary(
    results: list[Scored], spec: InferenceModel, written: list[Path], max_lines: int = 20
) -> str:
    """A compact human-readable report: the model, one line per input (up to `max_lines`),
    counts, failure reasons, and the files written."""
    ok = [s for s in results if s.prepared.ok]
    failed = [s for s in results if not s.prepared.ok]
    heads = ", ".join(f"{h}: {len(v)} classes" for h, v in spec.labels.items())
    lines = [
        f"model {spec.model_name} ({heads}); {spec.num_frames} frames @ {spec.input_size}px, "
        f"stride {spec.frame_stride}; checkpoint {Path(spec.checkpoint).name} "
        f"sha256 {spec.checkpoint_sha256[:12]}",
        f"preprocessing ({spec.settings_source}): short side {spec.settings.short_side}, "
        f"JPEG {spec.settings.jpeg_quality or 'off'}, detector {spec.settings.detector}, "
        f"detect every {spec.settings.face.detect_stride} frames",
    ]
    lines += [f"note: {n}" for n in spec.notes]
    width = min(max((len(Path(s.prepared.item.path).name) for s in results), default=10), 40)
    for s in results[:max_lines]:
        lines.append(_line(s, spec, width))
    if len(results) > max_lines:
        lines.append(f"... {len(results) - max_lines} more inputs in the table")
    lines.append(f"{len(results)} inputs: {len(ok)} ok, {len(failed)} failed")
    if ok:
        tops = pd.Series([_top(s, spec)[0] for s in ok]).value_counts()
        lines.append("top labels: " + ", ".join(f"{k} {v}" for k, v in tops.items()))
    if failed:
        codes = pd.Series([s.prepared.reason_code for s in failed]).value_counts()
        lines.append("failures: " + ", ".join(f"{k} {v}" for k, v in codes.items()))
    for path in written:
        lines.append(f"-> {path}")
    return "\n".join(lines)


def _top(s: Scored, spec: InferenceModel) -> tuple[str, float]:
    names = class_names(spec, s.prepared.head)
    k = int(np.argmax(s.probs))
    return names[k], float(s.probs[k])


def _line(s: Scored, spec: InferenceModel, width: int) -> str:
    p = s.prepared
    name = Path(p.item.path).name
    name = name if len(name) <= width else "..." + name[-(width - 3) :]
    kind = p.item.kind or "?"
    if not p.ok:
        return f"  FAILED {name:<{width}} {kind:<6} {p.reason_code}: {_short(p.reason)}"
    names = class_names(spec, p.head)
    order = np.argsort(-s.probs)
    top = f"{names[order[0]]} {s.probs[order[0]]:.2f}"
    rest = ", ".join(f"{names[k]} {s.probs[k]:.2f}" for k in order[1:3])
    face = f"{p.face_detections} face detections" if p.crop == "face" else "resized (no crop)"
    frames = f"{p.n_frames} frame{'s' if p.n_frames != 1 else ''}"
    return f"  ok     {name:<{width}} {kind:<6} {p.head} {top:<14} ({rest})  {frames}, {face}"


def _short(reason: str, limit: int = 110) -> str:
    reason = reason.splitlines()[0] if reason else ""
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."
