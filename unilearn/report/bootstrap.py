"""Bootstrap intervals of the pooled UAR/WAR, and paired comparisons of two models on the same
test clips.

- Resampling follows the pooling of the metric (`unilearn aggregate`): within each test fold,
  n_f clips are drawn with replacement from that fold's n_f clips; the folds' resamples are
  pooled and UAR/WAR computed once on the pool (UAR over the classes present in the resample).
- Only counts matter: UAR and WAR of a resample depend on how many of its clips fall in each
  cell (true class, prediction right or wrong); for a pair of models the cell is (true class,
  model A right, model B right), so both models are scored on the same resampled clips. A
  resample of fold f is therefore one Multinomial(n_f, cell shares of fold f) draw over the
  cells, which is the clip-index bootstrap exactly (in distribution), without drawing
  B x N indices (tests check it against `scipy.stats.bootstrap` and a plain loop).
- Interval: percentile, the (1 - confidence) / 2 and (1 + confidence) / 2 quantiles of the
  resampled statistic (numpy's linear quantile, as scipy's `method="percentile"`).
- Paired p-value, two-sided, from the resampled differences d* = metric_A* - metric_B*:
  p = min(1, 2 min((1 + #{d* <= 0}) / (B + 1), (1 + #{d* >= 0}) / (B + 1))).
  Two identical prediction sets give d* = 0 in every resample, so p = 1; p < 1 - confidence
  (about) when the percentile interval of the difference excludes 0.

Numbers are fractions (as the metrics JSON keeps UAR/WAR); the tables print percent. Each call
starts its own generator from `seed`, so a result depends only on its inputs and the seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Why not scipy.stats.bootstrap: it draws B x N clip indices (5e8 for 10,000 resamples of 50,000
# clips: seconds and gigabytes); the multinomial draw over the cells is the same bootstrap.


def cell_counts(labels: np.ndarray, correct: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
    """Clips per cell `[class, right_A, right_B, ...]` of one fold, flat (length K * 2^m)."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"label outside 0..{num_classes - 1}")
    code = labels.copy()
    for right in correct:
        right = np.asarray(right, dtype=bool)
        if right.shape != labels.shape:
            raise ValueError(f"{labels.shape[0]} labels but {right.shape[0]} predictions")
        code = 2 * code + right
    return np.bincount(code, minlength=num_classes * 2 ** len(correct))


def resample_counts(folds: Sequence[np.ndarray], n_resamples: int, seed: int) -> np.ndarray:
    """`[n_resamples, cells]`: the cell counts of each resample, pooled over the folds (each fold
    resampled within itself: a multinomial draw of its size over its cell shares)."""
    rng = np.random.default_rng(seed)
    total = np.zeros((n_resamples, len(folds[0])), dtype=np.int64)
    for counts in folds:
        n = int(counts.sum())
        if n:
            total += rng.multinomial(n, counts / n, size=n_resamples)
    return total


def uar_war(counts: np.ndarray, num_classes: int, n_models: int, model: int) -> tuple:
    """UAR and WAR of model `model` from cell counts `[..., K * 2^m]` (arrays over the leading
    axes): recall per class present, its mean, and overall accuracy."""
    shape = counts.shape[:-1] + (num_classes,) + (2,) * n_models
    cells = counts.reshape(shape)
    class_axis = len(counts.shape) - 1
    bit_axes = tuple(class_axis + 1 + j for j in range(n_models))
    support = cells.sum(axis=bit_axes)
    # the clips model `model` got right, whatever the other models did
    others = tuple(range(class_axis + 1, class_axis + n_models))
    right = np.take(cells, 1, axis=class_axis + 1 + model).sum(axis=others)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, right / np.maximum(support, 1), np.nan)
        uar = np.nanmean(recall, axis=-1)
        war = right.sum(axis=-1) / np.maximum(support.sum(axis=-1), 1)
    return uar, war


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(values, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def two_sided_p(diffs: np.ndarray) -> float:
    """The paired p-value of the module doc: how often the resampled difference falls on either
    side of zero, doubled, with the +1 of a Monte Carlo p-value."""
    b = len(diffs)
    below = (1 + np.count_nonzero(diffs <= 0)) / (b + 1)
    above = (1 + np.count_nonzero(diffs >= 0)) / (b + 1)
    return float(min(1.0, 2.0 * min(below, above)))


def _check_folds(folds: Sequence[tuple]) -> None:
    if not folds:
        raise ValueError("no folds of predictions to resample")


def pooled_interval(
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    num_classes: int,
    *,
    resamples: int,
    confidence: float,
    seed: int,
) -> dict[str, float]:
    """`{uar_lo, uar_hi, war_lo, war_hi}` of the UAR/WAR pooled over `folds` (one `(labels,
    preds)` pair per test fold; a single-split dataset is one fold)."""
    _check_folds(folds)
    counts = [cell_counts(y, [np.asarray(p) == y], num_classes) for y, p in folds]
    uar, war = uar_war(resample_counts(counts, resamples, seed), num_classes, 1, 0)
    (uar_lo, uar_hi), (war_lo, war_hi) = (percentile_interval(v, confidence) for v in (uar, war))
    return {"uar_lo": uar_lo, "uar_hi": uar_hi, "war_lo": war_lo, "war_hi": war_hi}


def paired_comparison(
    folds: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    num_classes: int,
    *,
    resamples: int,
    confidence: float,
    seed: int,
) -> dict[str, float]:
    """Model A against model B on the same clips: `folds` holds one `(labels, preds_a, preds_b)`
    per test fold, aligned clip by clip. Returns the pooled difference A - B of UAR and WAR
    (`diff_uar`, `diff_war`), its paired-bootstrap interval (`diff_uar_lo`, ...), the two-sided
    p-values (`p_uar`, `p_war`) and `n_paired`, the clips compared."""
    _check_folds(folds)
    counts = [
        cell_counts(y, [np.asarray(a) == y, np.asarray(b) == y], num_classes) for y, a, b in folds
    ]
    observed = np.sum(counts, axis=0)
    drawn = resample_counts(counts, resamples, seed)
    (ua, wa), (ub, wb) = (uar_war(drawn, num_classes, 2, m) for m in (0, 1))
    (oua, owa), (oub, owb) = (uar_war(observed, num_classes, 2, m) for m in (0, 1))
    return _difference({"uar": oua - oub, "war": owa - owb}, {"uar": ua - ub, "war": wa - wb},
                       confidence, int(observed.sum()))  # fmt: skip


def _difference(points: dict, drawn: dict, confidence: float, n_paired: int) -> dict[str, float]:
    """The keys of `paired_comparison` from the observed differences and their resamples."""
    out: dict[str, float] = {}
    for name, point in points.items():
        lo, hi = percentile_interval(drawn[name], confidence)
        out |= {f"diff_{name}": float(point), f"diff_{name}_lo": lo, f"diff_{name}_hi": hi,
                f"p_{name}": two_sided_p(drawn[name])}  # fmt: skip
    return out | {"n_paired": n_paired}


def paired_over_seeds(
    folds: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    num_classes: int,
    *,
    resamples: int,
    confidence: float,
    seed: int,
) -> dict[str, float]:
    """Model A against model B over S seeds of each, seed s of A paired with seed s of B, on the
    same clips: `folds` holds one `(labels [n_f], preds_a [S, n_f], preds_b [S, n_f])` per test
    fold, aligned clip by clip (every seed scored the same clips). The difference is the mean
    over the seeds of the pooled per-seed difference A_s - B_s (what a table's mean row shows).

    Its interval and p-value come from a two-level bootstrap: each resample draws the clips
    within each fold (one draw shared by every seed, since all seeds were tested on them) and S
    seeds with replacement, so that both the test set and the training seed vary. Counts again
    stand in for clips: a clip's cell is its class and the 2S right/wrong bits of the two models
    over the seeds, and only the cells that occur are drawn. Returns the keys of
    `paired_comparison`."""
    _check_folds(folds)
    n_seeds = np.asarray(folds[0][1]).shape[0]
    codes = []
    for labels, preds_a, preds_b in folds:
        labels, preds_a, preds_b = (
            np.asarray(a, dtype=np.int64) for a in (labels, preds_a, preds_b)
        )
        if preds_a.shape != (n_seeds, labels.size) or preds_b.shape != preds_a.shape:
            raise ValueError(f"expected predictions [{n_seeds}, {labels.size}] per model and fold")
        code = labels.copy()
        for s in range(n_seeds):  # 2 bits per seed: A right, B right
            code = 4 * code + 2 * (preds_a[s] == labels) + (preds_b[s] == labels)
        codes.append(code)
    cells = np.unique(np.concatenate(codes))
    fold_cells = [np.searchsorted(cells, c) for c in codes]
    # per cell: its class (one-hot [C, K]) and, per seed, whether A / B got it right ([C, S])
    bits = [(cells >> (2 * (n_seeds - 1 - s))) & 3 for s in range(n_seeds)]
    onehot = np.eye(num_classes)[cells >> (2 * n_seeds)]
    right = {m: np.stack([(b >> (1 - m)) & 1 for b in bits], axis=1) for m in (0, 1)}
    weights = np.concatenate(
        [onehot] + [(onehot[:, :, None] * right[m][:, None, :]).reshape(len(cells), -1)
                    for m in (0, 1)], axis=1)  # fmt: skip

    def per_seed_diffs(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """UAR and WAR differences A_s - B_s `[..., S]` from cell counts `[..., C]`."""
        sums = counts @ weights
        support = sums[..., :num_classes, None]
        metrics = []
        for m in (0, 1):
            start = num_classes * (1 + m * n_seeds)
            hits = sums[..., start : start + num_classes * n_seeds]
            hits = hits.reshape(*sums.shape[:-1], num_classes, n_seeds)
            with np.errstate(invalid="ignore", divide="ignore"):
                recall = np.where(support > 0, hits / np.maximum(support, 1), np.nan)
            uar = np.nanmean(recall, axis=-2)
            war = hits.sum(-2) / np.maximum(support.sum(-2), 1)
            metrics.append((uar, war))
        (ua, wa), (ub, wb) = metrics
        return ua - ub, wa - wb

    observed = np.zeros(len(cells))
    for idx in fold_cells:
        observed += np.bincount(idx, minlength=len(cells))
    point = [d.mean() for d in per_seed_diffs(observed)]
    rng = np.random.default_rng(seed)
    drawn = {"uar": [], "war": []}
    chunk = max(1, 2_000_000 // len(cells))  # resamples per step: bounded memory
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        counts = np.zeros((size, len(cells)))
        for idx in fold_cells:
            present, n = np.unique(idx, return_counts=True)
            counts[:, present] += rng.multinomial(idx.size, n / idx.size, size=size)
        picks = rng.integers(0, n_seeds, size=(size, n_seeds))
        for name, diffs in zip(("uar", "war"), per_seed_diffs(counts), strict=True):
            drawn[name].append(np.take_along_axis(diffs, picks, axis=1).mean(axis=1))
    drawn = {name: np.concatenate(parts) for name, parts in drawn.items()}
    return _difference(dict(zip(("uar", "war"), point, strict=True)), drawn, confidence,
                       int(observed.sum()))  # fmt: skip
