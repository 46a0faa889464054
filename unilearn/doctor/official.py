"""The split files against the official split statistics (clips per fold, split and class, counted
from the split files DFEW, MAFW and FERV39K distribute; `official_split_counts.json`, package data)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from functools import cache
from importlib import resources

from unilearn.data.native import NativeRead, dfew, ferv39k, mafw
from unilearn.data.native.common import SPLITS
from unilearn.doctor import ERROR, OK, Finding

PROTOCOL = {
    "dfew": "the official single-labeled 5-fold split",
    "mafw": "the official single-labeled, no-caption 5-fold split",
    "ferv39k": "the official All_scenes train/test split",
}
# Quarantine reasons whose rows are still listed in the split files with a valid label.
_LISTED = {"missing_clip", "empty_clip"}


@cache
def official_counts() -> dict[str, dict[str, dict[str, int]]]:
    """{dataset: {"fold1/train" | "official/test": {class name: clips}}}."""
    text = resources.files("unilearn.doctor").joinpath("official_split_counts.json").read_text()
    return json.loads(text)


def split_file_names(dataset: str, fold: str) -> tuple[str, str]:
    """The train and test split files of `fold` (its number; ignored for FERV39K), as the reader
    finds them, named below the dataset's split folder."""
    if dataset == "dfew":
        prefix = f"{dfew.SPLIT_DIR}/"
        train, test = (dfew.split_file(split, fold).removeprefix(prefix) for split in SPLITS)
    elif dataset == "mafw":
        prefix = f"{mafw.SPLIT_DIRS[0]}/"
        train, test = (mafw.split_file(split, fold).removeprefix(prefix) for split in SPLITS)
    else:
        train, test = (ferv39k.SPLIT_FILES[split] for split in SPLITS)
    return train, test


def split_key(fold, split: str) -> str:
    return f"fold{int(fold)}/{split}" if fold is not None else f"official/{split}"


def listed_counts(result: NativeRead) -> dict[str, Counter]:
    """Clips per split key and class as the split files list them (media problems included)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for r in result.rows + [q for q in result.quarantine if q["reason_code"] in _LISTED]:
        counts[split_key(r["fold"], r["split"])][r["label_name"]] += 1
    return counts


def compare_with_official(dataset: str, result: NativeRead) -> list[Finding]:
    """Name every difference between the split files and the official statistics."""
    official = official_counts()[dataset]
    found = listed_counts(result)
    findings: list[Finding] = []
    swapped = []
    for key in sorted(official):
        fold, split = key.split("/")
        other = f"{fold}/{'test' if split == 'train' else 'train'}"
        if found.get(key) != Counter(official[key]) and found.get(key) == Counter(official[other]):
            swapped.append(key)
    swapped_folds = sorted({k.split("/")[0] for k in swapped})
    for fold in swapped_folds:
        k = fold.removeprefix("fold")
        train, test = split_file_names(dataset, k)
        where = f"fold {k}: " if fold != "official" else ""
        findings.append(
            Finding(
                ERROR,
                "train_test_swapped",
                f"{where}the train and test split files {train} and {test} are swapped (train has the official test counts and vice versa)",
                f"swap {train} and {test} back ({train} is the larger one)",
                headline=f"{where}{train} and {test} swapped",
            )
        )
    deltas = []
    for key in sorted(official):
        if key.split("/")[0] in swapped_folds:
            continue
        exp, got = Counter(official[key]), found.get(key, Counter())
        for name in sorted(set(exp) | set(got)):
            if exp[name] != got[name]:
                deltas.append((key, name, exp[name], got[name]))
    for key in sorted(set(found) - set(official)):
        deltas.append((key, "(all)", 0, sum(found[key].values())))
    if deltas:
        total_missing = sum(max(e - g, 0) for _, _, e, g in deltas)
        total_extra = sum(max(g - e, 0) for _, _, e, g in deltas)
        by_key = defaultdict(list)
        for key, name, e, g in deltas:
            by_key[key].append(f"{name} {g - e:+d} ({g} vs {e})")
        relabel = _relabel_pattern(deltas)
        counts = f"{total_missing} clip slots missing, {total_extra} extra"
        findings.append(
            Finding(
                ERROR,
                "split_counts_differ",
                f"the split files differ from {PROTOCOL[dataset]} in {len(by_key)} of {len(official)} splits: "
                f"{counts}" + (f"; {relabel}" if relabel else ""),
                "use the split files exactly as the dataset distributes them (do not regenerate or filter them)",
                tuple(f"{key}: {', '.join(v)}" for key, v in sorted(by_key.items())),
                relabel
                or f"class counts differ from the official split in {len(by_key)} splits ({counts})",
            )
        )
    if not findings:
        total = sum(sum(c.values()) for c in found.values())
        findings.append(
            Finding(
                OK,
                "matches_official_split",
                f"split files match {PROTOCOL[dataset]} ({total} rows, every fold/split/class count equal)",
            )
        )
    return findings


def _relabel_pattern(deltas: list[tuple[str, str, int, int]]) -> str:
    """A clip moved between classes shows as +n in one class and -n in another of the same split
    with unchanged split sizes; say which classes, since the official files name no clip ids."""
    per_key = defaultdict(dict)
    for key, name, e, g in deltas:
        per_key[key][name] = g - e
    moves = Counter()
    for d in per_key.values():
        if sum(d.values()) == 0 and len(d) == 2:
            (a, da), (b, _) = sorted(d.items(), key=lambda kv: kv[1])
            moves[f"{-da} clip(s) relabelled from {a} to {b}"] += 1
    return "; ".join(f"{m} (in {n} splits)" for m, n in moves.most_common())
