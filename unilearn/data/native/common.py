"""What every native reader shares: the row schema, the result type, errors, quarantine reasons,
frame counting and the checks of split files against each other."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from unilearn.catalogue import DATASETS, LabelSet

# Manifest columns (docs/ARCHITECTURE.md, Manifest). Readers may add dataset-specific columns after.
COLUMNS = (
    "dataset",
    "clip_id",
    "path",
    "media",
    "label",
    "label_name",
    "fold",
    "split",
    "n_frames",
    "source_file",
)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# The splits every split file belongs to (the test split is the held-out fold / official test).
SPLITS = ("train", "test")

# Quarantine reason codes (the `reason_code` column); `reason` says the same with file, line, clip.
REASONS = {
    "malformed_line": "a split/annotation line that cannot be parsed",
    "unknown_label": "a label outside the dataset's class set",
    "not_an_emotion": "AffectNet expression 8-10 (none, uncertain, no face)",
    "excluded_class": "a class this label set leaves out (contempt in AffectNet-7)",
    "duplicate_row": "the same clip listed twice in one split file",
    "missing_clip": "the split file names a clip whose media does not exist",
    "empty_clip": "a frame folder with no image files",
    "unreadable_video": "a video the container cannot open, or with zero frames",
    "label_contradicts_path": "a split row whose label is not the emotion folder its path names",
    "bad_face_box": "an annotated face box of zero size or (mostly) outside its image",
    "misplaced_video": "a video at a depth or with a file name the native layout does not use",
}


class DatasetLayoutError(FileNotFoundError):
    """The dataset root or one of its required files is not where the native layout puts it."""


class SplitFileError(ValueError):
    """A split or annotation file cannot be read at all (bad header, not text, 0-based labels)."""


def no_rows_error(dataset: str, root: Path, what: str) -> DatasetLayoutError:
    """The error for a tree in which the reader found nothing at all (never a 0-row manifest)."""
    return DatasetLayoutError(
        f"{dataset}: found 0 rows under {root}: {what}. Point --root at the dataset's own top "
        "folder, laid out as distributed (docs/data.md)"
    )


@dataclass(frozen=True)
class Finding:
    """One disagreement between split files (a fold that is not a partition, a label conflict)."""

    code: str
    message: str
    clip_ids: tuple[str, ...] = ()


@dataclass
class NativeRead:
    """A reader's answer: kept rows, quarantined rows (with `reason`), split-file findings."""

    dataset: str
    root: Path
    rows: list[dict] = field(default_factory=list)
    quarantine: list[dict] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    @property
    def rows_in(self) -> int:
        return len(self.rows) + len(self.quarantine)


def row(
    dataset: str,
    clip_id: str,
    path: str | Path,
    media: str,
    label: int,
    label_name: str,
    fold: int | None,
    split: str,
    n_frames: int,
    source_file: str,
    **extra,
) -> dict:
    return {
        "dataset": dataset,
        "clip_id": clip_id,
        "path": str(path),
        "media": media,
        "label": label,
        "label_name": label_name,
        "fold": fold,
        "split": split,
        "n_frames": n_frames,
        "source_file": source_file,
        **extra,
    }


def quarantined(entry: dict, code: str, reason: str) -> dict:
    """`entry` as a quarantine row: `reason` names the file, the line and the problem."""
    if code not in REASONS:
        raise ValueError(f"unknown quarantine reason code {code!r}")
    return {**entry, "reason_code": code, "reason": reason}


def require_dir(path: Path, dataset: str, what: str) -> Path:
    """`path` if it is a directory, else a `DatasetLayoutError` naming the expected path."""
    if not path.is_dir():
        hint = ""
        parent = path.parent
        if parent.is_dir():
            near = sorted(p.name for p in parent.iterdir())[:8]
            hint = f" ({parent} holds: {', '.join(near) or 'nothing'})"
        raise DatasetLayoutError(
            f"{dataset}: expected {what} at {path}, which does not exist{hint}"
        )
    return path


def require_file(path: Path, dataset: str, what: str) -> Path:
    if not path.is_file():
        raise DatasetLayoutError(f"{dataset}: expected {what} at {path}, which does not exist")
    return path


def require_root(root: str | Path, dataset: str, top: str, marker: str) -> Path:
    """The dataset root, absolute. `marker` is a sub-path the native layout always has; when the
    user passed the parent directory instead (`DIR` instead of `DIR/DFEW`), the error says so."""
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise DatasetLayoutError(
            f"{dataset}: dataset root {root} does not exist (expected the {top}/ folder)"
        )
    if not (root / marker).exists() and (root / top / marker).exists():
        raise DatasetLayoutError(
            f"{dataset}: {root} has no {marker}; did you mean --root {root / top}?"
        )
    return root


def read_lines(path: Path, dataset: str) -> list[str]:
    """Lines of a text split file; a binary or non-UTF-8 file is a `SplitFileError`."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise SplitFileError(
            f"{dataset}: {path} is not a UTF-8 text file ({err.reason} at byte {err.start})"
        ) from None
    if "\x00" in text:
        raise SplitFileError(f"{dataset}: {path} is not a text file (NUL bytes)")
    return text.splitlines()


def count_images(folder: str | Path) -> int | None:
    """Image files directly in `folder`; None if the folder does not exist."""
    try:
        with os.scandir(folder) as it:
            return sum(1 for e in it if e.name.lower().endswith(IMAGE_SUFFIXES) and e.is_file())
    except (FileNotFoundError, NotADirectoryError):
        return None


def parallel_map(fn: Callable, items: list, desc: str, workers: int, progress: bool) -> list:
    """`fn` over `items` in threads (file-system bound work), in order, with a progress bar."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(
            tqdm(
                pool.map(fn, items, chunksize=64),
                total=len(items),
                desc=desc,
                unit="clip",
                disable=not progress or len(items) < 256,
                leave=False,
            )
        )


def resolve_labels(
    entries: list[dict], label_set: LabelSet, native_key: str = "native_label"
) -> tuple[list[dict], list[dict]]:
    """Map each entry's native label to a canonical id; unknown labels are quarantined."""
    kept, bad = [], []
    for e in entries:
        native = e.pop(native_key)
        try:
            e["label"] = label_set.id_of(native)
            e["label_name"] = label_set.classes[e["label"]]
            kept.append(e)
        except KeyError:
            e["label"], e["label_name"] = -1, ""
            bad.append(
                quarantined(
                    e,
                    "unknown_label",
                    f"{e['source_file']}: clip {e['clip_id']} has label {native!r}, which is not one of the "
                    f"{label_set.num_classes} {label_set.name} classes ({', '.join(label_set.classes)})",
                )
            )
    return kept, bad


def drop_duplicates(entries: list[dict]) -> tuple[list[dict], list[dict]]:
    """Keep the first listing of a clip in each (fold, split); quarantine the repeats."""
    seen: dict[tuple, str] = {}
    kept, bad = [], []
    for e in entries:
        key = (e["fold"], e["split"], e["clip_id"])
        if key in seen:
            bad.append(
                quarantined(
                    e,
                    "duplicate_row",
                    f"{e['source_file']}: clip {e['clip_id']} is listed again (first at {seen[key]})",
                )
            )
        else:
            seen[key] = e["source_file"]
            kept.append(e)
    return kept, bad


def attach_frame_counts(
    entries: list[dict],
    rel_dir: Callable[[dict], str],
    root: Path,
    dataset: str,
    workers: int,
    progress: bool,
) -> tuple[list[dict], list[dict]]:
    """Count the images of every clip's frame folder once; quarantine missing and empty folders."""
    # plain strings, not pathlib: at 58k rows (DFEW, 5 folds) Path joins dominate the run time
    base = str(root)
    folders = sorted({rel_dir(e) for e in entries})
    counts = dict(
        zip(
            folders,
            parallel_map(
                lambda r: count_images(f"{base}/{r}"),
                folders,
                f"{dataset}: frames",
                workers,
                progress,
            ),
        )
    )
    kept, bad = [], []
    for e in entries:
        rel = rel_dir(e)
        n = counts[rel]
        e["path"] = f"{base}/{rel}"
        if n is None:
            e["n_frames"] = 0
            bad.append(
                quarantined(
                    e,
                    "missing_clip",
                    f"{e['source_file']}: clip {e['clip_id']} has no frame folder {rel} under {root}",
                )
            )
        elif n == 0:
            e["n_frames"] = 0
            bad.append(
                quarantined(
                    e,
                    "empty_clip",
                    f"{e['source_file']}: clip {e['clip_id']} has no frames under {rel} (empty folder)",
                )
            )
        else:
            e["n_frames"] = n
            kept.append(e)
    return kept, bad


def split_file_entries(
    out: NativeRead,
    rel: str,
    what: str,
    *,
    fold: int | None,
    split: str,
    parse: Callable[[str], tuple[str, tuple[str, str] | None]],
    expected: str,
    frames_dir: str,
    header: Sequence[str] = (),
) -> list[dict]:
    """The clips a frame-folder dataset's split file `rel` (under `out.root`; `what`: how errors
    name it) lists, as entries with `native_label`. A file with a `header` must start with it.

    Blank lines are skipped. `parse(line)` gives `(id as written, (clip_id, native label))`, or
    `(id as written, None)` for a line it cannot parse, which goes to `out.quarantine` as
    `malformed_line` (`expected`: what a line should look like). A clip's frames are at
    `frames_dir/<clip_id>` under `out.root`."""
    title = DATASETS[out.dataset].title
    path = require_file(out.root / rel, title, what)
    lines = read_lines(path, title)
    if header:
        if not lines or tuple(c.strip() for c in lines[0].split(",")) != tuple(header):
            got = repr(lines[0][:60]) if lines else "an empty file"
            raise SplitFileError(
                f"{title}: {path} line 1: expected the header '{','.join(header)}', got {got}"
            )
        lines = lines[1:]
    entries = []
    for i, line in enumerate(lines, start=2 if header else 1):
        if not line.strip():
            continue
        src = f"{rel}:{i}"
        written, parsed = parse(line)
        base = row(out.dataset, written, "", "frames", -1, "", fold, split, 0, src)
        if parsed is None:
            reason = f"{src}: expected '{expected}', got {line[:80]!r}"
            out.quarantine.append(quarantined(base, "malformed_line", reason))
            continue
        clip_id, native_label = parsed
        path = f"{out.root}/{frames_dir}/{clip_id}"
        entries.append({**base, "clip_id": clip_id, "path": path, "native_label": native_label})
    return entries


def finish_frame_folders(
    out: NativeRead,
    entries: list[dict],
    label_set: LabelSet,
    folds: tuple[int, ...],
    frames_dir: str,
    name: str,
    workers: int,
    progress: bool,
) -> NativeRead:
    """The end every frame-folder reader (DFEW, MAFW, FERV39K) shares: the split files checked
    against each other, native labels resolved, repeated listings dropped and the frames counted
    under `frames_dir/<clip_id>`; each step adds what it rejects to `out.quarantine`."""
    out.findings = check_folds(entries, folds, name)
    entries, bad = resolve_labels(entries, label_set)
    out.quarantine += bad
    entries, bad = drop_duplicates(entries)
    out.quarantine += bad
    out.rows, bad = attach_frame_counts(
        entries, lambda e: f"{frames_dir}/{e['clip_id']}", out.root, name, workers, progress
    )
    out.quarantine += bad
    return out


def check_folds(listed: Iterable[dict], folds: tuple[int, ...], dataset: str) -> list[Finding]:
    """Split files against each other: for k-fold datasets each clip is test in exactly one fold,
    train and test are disjoint within a fold, every fold covers the same clips, and a clip has
    one label everywhere. For single-split datasets: train and test are disjoint."""
    findings: list[Finding] = []

    def flag(code: str, clips: list[str], problem: str, examples: Iterable[str] = ()) -> None:
        """A finding naming every clip of `clips` (none: nothing to report); the message shows
        `examples` (default: the first five clips)."""
        if clips:
            shown = ", ".join(examples or clips[:5])
            findings.append(Finding(code, f"{dataset}: {problem} (e.g. {shown})", tuple(clips)))

    by_fold: dict[int | None, dict[str, set[str]]] = defaultdict(
        lambda: {"train": set(), "test": set()}
    )
    labels: dict[str, set[str]] = defaultdict(set)
    for e in listed:
        by_fold[e["fold"]][e["split"]].add(e["clip_id"])
        labels[e["clip_id"]].add(str(e.get("native_label", e.get("label_name", ""))).strip())
    for fold, s in sorted(by_fold.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
        both = sorted(s["train"] & s["test"])
        where = f"fold {fold}" if fold is not None else "the official split"
        flag("train_test_overlap", both, f"{len(both)} clips are both train and test in {where}")
    if folds:
        tested: dict[str, list[int]] = defaultdict(list)
        for fold in folds:
            for cid in by_fold[fold]["test"]:
                tested[cid].append(fold)
        everyone = (
            set().union(*(s["train"] | s["test"] for s in by_fold.values())) if by_fold else set()
        )
        never = sorted(everyone - set(tested))
        flag("never_tested", never, f"{len(never)} clips are test in no fold")
        several = sorted(c for c, f in tested.items() if len(f) > 1)
        problem = f"{len(several)} clips are test in more than one fold"
        examples = [f"{c} in folds {tested[c]}" for c in several[:3]]
        flag("tested_in_several_folds", several, problem, examples)
        for fold in folds:
            union = by_fold[fold]["train"] | by_fold[fold]["test"]
            missing = sorted(everyone - union)
            problem = f"fold {fold} lists {len(union)} clips, {len(missing)} fewer than the union"
            flag("fold_union_differs", missing, problem + " of all folds")
    conflicts = sorted(c for c, names in labels.items() if len(names) > 1)
    problem = f"{len(conflicts)} clips carry different labels in different split files"
    flag("label_conflict", conflicts, problem, [f"{c}: {sorted(labels[c])}" for c in conflicts[:3]])
    return findings
