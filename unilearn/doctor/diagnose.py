"""The doctor's diagnosis of one dataset copy: `diagnose(dataset, root)` reads the native tree with
the readers `unilearn manifest` uses, compares the split files with the official statistics
(`unilearn.doctor.official`), inspects the media on a sample (`unilearn.doctor.media`) and
returns a verdict, the findings and the reader's answer; `format_text` and `format_markdown`
write them for the terminal and the --report file. It also says which framing `unilearn
preprocess` gives the dataset's store and, given the store, which one the store holds
(`framing_findings`). The bundled synthetic data (recognised by its synth.json) passes as what it
is.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from unilearn.catalogue import (
    AFFECTNET_VAL_PER_CLASS,
    DATASETS,
    FRAMING_TEXT,
    FRAMINGS,
    VOXCELEB2_DEV_CLIPS,
)
from unilearn.data.face_clip import resolve_framing
from unilearn.data.native import (
    DatasetLayoutError,
    NativeRead,
    SplitFileError,
    read_native,
)
from unilearn.data.synth import read_summary
from unilearn.doctor import ERROR, OK, WARNING, Finding
from unilearn.doctor.media import inspect, media_findings
from unilearn.doctor.official import PROTOCOL, compare_with_official
from unilearn.layout import store_settings

_FIXES = {
    "missing_clip": "the split files name clips that are not on disk: complete the download/extraction",
    "empty_clip": "frame folders without frames: re-extract these clips",
    "unknown_label": "labels outside the class set: the split files were edited or converted wrongly",
    "malformed_line": "lines that cannot be parsed: restore the original split files",
    "duplicate_row": "clips listed twice in one split file: restore the original split files",
    "unreadable_video": "videos that cannot be opened: re-download them (VoxCeleb2 has a few hundred such files; a handful is normal)",
    "not_an_emotion": "AffectNet's expression codes 8-10 (none, uncertain, no face) are left out by design",
    "excluded_class": "contempt is not part of AffectNet-7 (left out by design)",
    "label_contradicts_path": "split rows whose label is not their path's emotion folder: restore the original split files",
    "bad_face_box": "annotated face boxes of zero size or outside the image: restore the original annotation tables",
    "misplaced_video": "mp4 files outside dev/mp4/<speaker>/<youtube id>/ or named .MP4: move or rename them",
}
# The problem in words, for the verdict: "{n} {noun}".
_NOUNS = {
    "missing_clip": "missing clip(s)",
    "empty_clip": "empty frame folder(s)",
    "unknown_label": "clip(s) with a label outside the class set",
    "malformed_line": "split line(s) that cannot be parsed",
    "duplicate_row": "clip(s) listed twice in one split file",
    "unreadable_video": "unreadable video(s)",
    "label_contradicts_path": "clip(s) labelled against their emotion folder",
    "bad_face_box": "face box(es) of zero size or outside the image",
    "misplaced_video": "misplaced mp4 file(s)",
}
# Quarantine reasons that are the dataset's normal state, not a problem of this copy.
_EXPECTED = {"not_an_emotion", "excluded_class"}


def diagnose(
    dataset: str,
    root: str | Path,
    *,
    sample: int = 50,
    face_clips: int = 12,
    detector: str = "auto",
    seed: int = 0,
    progress: bool = True,
    workers: int | None = None,
    store: str | Path | None = None,
    framing: str = "auto",
) -> tuple[str, list[Finding], NativeRead | None]:
    """(verdict line, findings, reader result). The data reproduces the protocol iff no finding is an error."""
    name = DATASETS[dataset].title
    try:
        result = read_native(dataset, root, progress=progress, workers=workers)
    except (DatasetLayoutError, SplitFileError) as err:
        f = Finding(
            ERROR,
            "layout",
            str(err),
            "point --root at the dataset's own top folder, laid out as distributed (docs/data.md)"
            if isinstance(err, DatasetLayoutError)
            else "restore the original split files (or read them as the message says)",
        )
        return f"{name}: cannot be read — {err}", [f], None
    summary = read_summary(root)
    synthetic = bool(summary and summary.get("synthetic"))
    findings = _quarantine_findings(result, summary if synthetic else None)
    findings += [
        Finding(
            ERROR,
            f.code,
            f"split files disagree: {f.message}",
            "restore the original split files",
            f.clip_ids,
            "split files disagree: " + f.message.split(": ", 1)[-1].split(" (e.g.")[0],
        )
        for f in result.findings
    ]
    if synthetic:
        findings.insert(
            0,
            Finding(
                OK,
                "synthetic",
                f"bundled synthetic data (unilearn synth, preset {summary['preset']}, seed {summary['seed']}): split statistics are the synthetic ones, not the official ones",
            ),
        )
    elif dataset in PROTOCOL:
        findings += compare_with_official(dataset, result)
    elif dataset.startswith("affectnet"):
        findings += _affectnet_findings(result)
    elif dataset == "voxceleb2":
        findings += _voxceleb2_findings(result)
    media = inspect(
        result, sample, detector=detector, face_clips=face_clips, seed=seed, progress=progress
    )
    findings += media_findings(result, media, synthetic)
    findings += framing_findings(dataset, store, framing)
    return _verdict(dataset, findings, synthetic, summary), findings, result


def framing_findings(dataset: str, store: str | Path | None, framing: str) -> list[Finding]:
    """Which framing `unilearn preprocess --framing FRAMING` gives the dataset's store, and,
    with `store`, which one the store already holds (its settings.json) and whether they agree."""
    table = DATASETS[dataset].store_table
    if table not in FRAMINGS:
        return []
    want = resolve_framing(framing, table)
    authors, ours = FRAMINGS[table]
    which = "the authors'" if want == authors else "ours" if want == ours else "ours on every row"
    planned = Finding(
        OK,
        "framing",
        f"preprocess frames {DATASETS[dataset].title} as {want} ({which}: {FRAMING_TEXT[want]}; "
        f"data.store.framing.{table}, the other choice: {ours if want == authors else authors})",
    )
    settings = store_settings(store, table) if store is not None else None
    if settings is None or not settings.is_file():
        return [planned]
    # a store made before framing was recorded holds ours (`default`)
    held = json.loads(settings.read_text()).get("framing", "default")
    if held == want:
        return [Finding(OK, "store_framing", f"{settings} holds {held}: {FRAMING_TEXT[held]}")]
    return [
        Finding(
            WARNING,
            "store_framing",
            f"{settings} holds {held} ({FRAMING_TEXT[held]}), not {want}: preprocess refuses to "
            "add to it, and models trained on it saw the other framing",
            f"preprocess into another --out (or delete {settings.parent}), or set "
            f"data.store.framing.{table}: {held}",
            headline=f"store framed {held}, not {want}",
        )
    ]


def _quarantine_findings(result: NativeRead, synth: dict | None) -> list[Finding]:
    findings = []
    planted = {(b["dataset"], b["clip_id"]) for b in (synth or {}).get("broken", [])}
    by_code: dict[str, list[dict]] = {}
    for q in result.quarantine:
        by_code.setdefault(q["reason_code"], []).append(q)
    for code, rows in sorted(by_code.items()):
        ids = sorted({r["clip_id"] for r in rows})
        unexpected = [
            i for i in ids if (result.dataset.replace("affectnet7", "affectnet"), i) not in planted
        ]
        if synth is not None and not unexpected:
            findings.append(
                Finding(
                    OK,
                    f"planted_{code}",
                    f"{len(ids)} deliberately broken synthetic input(s) quarantined as planted ({code}: {', '.join(ids[:5])})",
                )
            )
            continue
        if code in _EXPECTED or (
            code == "unreadable_video" and len(ids) <= 1000 and result.dataset == "voxceleb2"
        ):
            findings.append(
                Finding(
                    OK if code in _EXPECTED else WARNING,
                    code,
                    f"{len(rows)} rows left out: {_FIXES[code]}",
                    "",
                    tuple(r["reason"] for r in rows),
                )
            )
            continue
        label = _NOUNS.get(code, code.replace("_", " "))
        findings.append(
            Finding(
                ERROR,
                code,
                f"{len(ids)} {label} ({len(rows)} split rows): {', '.join(ids[:10])}{' ...' if len(ids) > 10 else ''}",
                _FIXES[code],
                tuple(r["reason"] for r in rows),
                f"{len(ids)} {label}",
            )
        )
    return findings


def _affectnet_findings(result: NativeRead) -> list[Finding]:
    val = Counter(r["label_name"] for r in result.rows if r["split"] == "test")
    odd = {c: n for c, n in val.items() if n != AFFECTNET_VAL_PER_CLASS}
    if odd or not val:
        return [
            Finding(
                WARNING,
                "validation_counts",
                f"the validation set should have {AFFECTNET_VAL_PER_CLASS} images per class; found {dict(sorted(val.items()))}",
                "use validation.csv as distributed",
            )
        ]
    return [
        Finding(
            OK,
            "validation_counts",
            f"validation set: {AFFECTNET_VAL_PER_CLASS} images in each of {len(val)} classes (the official test set)",
        )
    ]


def _voxceleb2_findings(result: NativeRead) -> list[Finding]:
    n = result.rows_in
    if n < 0.99 * VOXCELEB2_DEV_CLIPS:
        return [
            Finding(
                WARNING,
                "fewer_clips",
                f"{n:,} mp4 files under dev/mp4; the official dev set has {VOXCELEB2_DEV_CLIPS:,}",
                "pre-training on fewer clips changes the pre-trained encoder",
            )
        ]
    return [
        Finding(
            OK,
            "clip_count",
            f"{n:,} mp4 files under dev/mp4 (official dev set: {VOXCELEB2_DEV_CLIPS:,})",
        )
    ]


def _verdict(dataset: str, findings: list[Finding], synthetic: bool, summary: dict | None) -> str:
    name = DATASETS[dataset].title
    errors = [f for f in findings if f.severity == ERROR]
    if errors:
        problems = "; ".join(f.in_words for f in errors)
        return f"{name}: would NOT reproduce the paper's protocol — {len(errors)} problem(s): {problems}. See the details below for what to do."
    if synthetic:
        return f"{name}: bundled synthetic data (unilearn synth, preset {summary['preset']}, seed {summary['seed']}) — OK for the demo pipeline; not the real dataset, so the paper's numbers do not apply."
    parts = [
        f.message.split(" (")[0]
        for f in findings
        if f.severity == OK
        and f.code
        in {
            "matches_official_split",
            "original_frames",
            "faces_cropped",
            "validation_counts",
            "clip_count",
        }
    ]
    warnings = [f for f in findings if f.severity == WARNING]
    tail = f" ({len(warnings)} warning(s) below)" if warnings else ""
    return f"{name}: {'; '.join(parts) or 'no problems found'} — OK{tail}"


_MARK = {ERROR: "FAIL", WARNING: "WARN", OK: "ok"}


def format_text(verdict: str, findings: list[Finding]) -> str:
    lines = [verdict, ""]
    for f in sorted(findings, key=lambda f: [ERROR, WARNING, OK].index(f.severity)):
        lines.append(f"[{_MARK[f.severity]}] {f.message}")
        if f.fix and f.severity != OK:
            lines.append(f"       what to do: {f.fix}")
        for d in f.details[:5] if f.severity != OK else ():
            lines.append(f"       - {d}")
        if len(f.details) > 5 and f.severity != OK:
            lines.append(f"       - ... {len(f.details) - 5} more in the report (--report)")
    return "\n".join(lines)


def format_markdown(
    dataset: str, root: Path, verdict: str, findings: list[Finding], result: NativeRead | None
) -> str:
    lines = [
        f"# unilearn doctor: {DATASETS[dataset].title}",
        "",
        f"Root: `{root}`",
        "",
        f"**Verdict:** {verdict}",
        "",
    ]
    for severity, title in ((ERROR, "Problems"), (WARNING, "Warnings"), (OK, "Checks passed")):
        group = [f for f in findings if f.severity == severity]
        if not group:
            continue
        lines += [f"## {title}", ""]
        for f in group:
            lines.append(f"- **{f.code}**: {f.message}")
            if f.fix and severity != OK:
                lines.append(f"  - what to do: {f.fix}")
            lines += [f"  - `{d}`" for d in f.details]
        lines.append("")
    if result is not None:
        lines += [
            "## Rows",
            "",
            f"{result.rows_in} rows in the split/annotation files: {len(result.rows)} usable, {len(result.quarantine)} left out.",
            "",
        ]
    return "\n".join(lines) + "\n"
