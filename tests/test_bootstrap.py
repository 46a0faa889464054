"""Bootstrap intervals and paired comparisons: the count resampler is the clip bootstrap (its
statistic is UAR/WAR exactly, its intervals those of `scipy.stats.bootstrap` resampling within each
fold and of a plain loop), identical prediction sets differ with p = 1, a model scored against
shuffled labels has an interval that covers chance, and `unilearn aggregate` writes the interval
of the files it pools, with the lost clips summed over the folds. Over several seeds the paired
comparison is a bootstrap over clips and seeds: one seed is the plain paired comparison, and seeds
that disagree widen it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from unilearn.cli import main as cli_main
from unilearn.config import BootstrapConfig
from unilearn.engine.aggregate import aggregate, classification_metrics
from unilearn.report.bootstrap import (
    cell_counts,
    paired_comparison,
    paired_over_seeds,
    pooled_interval,
    two_sided_p,
    uar_war,
)

K = 7
SETTINGS = {"resamples": 10_000, "confidence": 0.95, "seed": 0}
# Two bootstraps with different random draws agree to Monte Carlo error only: with 10,000
# resamples of a few hundred clips the endpoints move by ~0.2 points from seed to seed.
MC = 0.006


def _model(rng, n: int, accuracy: float, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.choice(k, n, p=np.arange(1, k + 1) / (k * (k + 1) / 2))  # imbalanced, as DFEW
    right = rng.random(n) < accuracy
    return labels, np.where(right, labels, (labels + rng.integers(1, k, n)) % k)


def _folds(seed: int = 0, sizes=(150, 120, 170, 140, 160), accuracy: float = 0.6):
    rng = np.random.default_rng(seed)
    return [_model(rng, n, accuracy) for n in sizes]


def _pooled_uar_war(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """UAR/WAR of each row of `[batch, clips]` codes (label * K + pred), via confusion matrices."""
    codes = np.atleast_2d(codes)
    rows = np.arange(len(codes))[:, None] * K * K
    conf = np.bincount((codes + rows).ravel(), minlength=len(codes) * K * K)
    conf = conf.reshape(len(codes), K, K)
    support = conf.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, np.diagonal(conf, axis1=1, axis2=2) / support, np.nan)
    return np.nanmean(recall, -1), np.trace(conf, axis1=1, axis2=2) / conf.sum((1, 2))


def test_resampled_statistic_is_the_pooled_uar_and_war_exactly():
    rng = np.random.default_rng(3)
    folds = _folds(1)
    for _ in range(20):  # any resample of the clips, scored from its cell counts alone
        idx = [rng.integers(0, len(y), len(y)) for y, _ in folds]
        labels = np.concatenate([y[i] for (y, _), i in zip(folds, idx)])
        preds = np.concatenate([p[i] for (_, p), i in zip(folds, idx)])
        counts = cell_counts(labels, [preds == labels], K)
        got_uar, got_war = uar_war(counts, K, 1, 0)
        m = classification_metrics(labels, preds, K)
        assert got_uar == pytest.approx(m["uar"], abs=1e-12)
        assert got_war == pytest.approx(m["war"], abs=1e-12)


def test_interval_equals_scipy_bootstrap_resampling_within_each_fold():
    folds = _folds(0)
    ours = pooled_interval(folds, K, **SETTINGS)
    codes = [y * K + p for y, p in folds]  # scipy resamples each fold (sample) on its own

    for j, metric in enumerate(("uar", "war")):

        def statistic(*samples, axis=-1, j=j):
            return _pooled_uar_war(np.concatenate(samples, axis=axis))[j]

        ref = stats.bootstrap(codes, statistic, vectorized=True, paired=False, n_resamples=10_000,
                              method="percentile", random_state=1).confidence_interval  # fmt: skip
        assert ours[f"{metric}_lo"] == pytest.approx(ref.low, abs=MC)
        assert ours[f"{metric}_hi"] == pytest.approx(ref.high, abs=MC)


def _write_folds(root: Path, folds, preds_of=lambda y, p: p) -> list[Path]:
    paths = []
    for k, (y, p) in enumerate(folds, start=1):
        path = root / f"dfew-fold{k}" / "pred-dfew.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({
            "dataset": "dfew", "experiment": "unilearn", "head": "dfer",
            "clip_id": [f"{k}-{i}" for i in range(len(y))], "fold": pd.array([k] * len(y), "Int8"),
            "split": "test", "label": y, "pred": preds_of(y, p),
            "scores": [np.zeros(K, np.float32)] * len(y), "config_hash": "abc",
        }).to_parquet(path, index=False)  # fmt: skip
        paths.append(path)
    return paths


def _loop_interval(folds, resamples: int, seed: int) -> dict[str, float]:
    """The reference: draw each fold's clip indices, pool, score with `classification_metrics`."""
    rng = np.random.default_rng(seed)
    uars, wars = [], []
    for _ in range(resamples):
        idx = [rng.integers(0, len(y), len(y)) for y, _ in folds]
        labels = np.concatenate([y[i] for (y, _), i in zip(folds, idx)])
        preds = np.concatenate([p[i] for (_, p), i in zip(folds, idx)])
        m = classification_metrics(labels, preds, K)
        uars.append(m["uar"])
        wars.append(m["war"])
    lo, hi = 2.5, 97.5
    return {"uar_lo": np.percentile(uars, lo), "uar_hi": np.percentile(uars, hi),
            "war_lo": np.percentile(wars, lo), "war_hi": np.percentile(wars, hi)}  # fmt: skip


def test_aggregate_writes_the_interval_of_fixed_prediction_files(tmp_path):
    folds = _folds(2)
    paths = _write_folds(tmp_path, folds)
    out = tmp_path / "metrics.json"
    assert cli_main(["aggregate", *map(str, paths), "--out", str(out), "--expect-folds", "5"]) == 0
    m = json.loads(out.read_text())
    assert m["bootstrap"]["resamples"] == BootstrapConfig().resamples == 10_000
    assert m["uar_lo"] < m["uar"] < m["uar_hi"] and m["war_lo"] < m["war"] < m["war_hi"]
    ref = _loop_interval(folds, 4000, seed=5)
    for key, value in ref.items():
        assert m[key] == pytest.approx(value, abs=MC), key
    # fixed seed: the same files give the same interval; another seed another one
    again = aggregate(paths, bootstrap=BootstrapConfig())
    assert {k: again[k] for k in ref} == {k: m[k] for k in ref}
    other = aggregate(paths, bootstrap=BootstrapConfig(seed=1))
    assert other["uar_lo"] != m["uar_lo"]


def test_aggregate_sums_clips_and_unreadable_clips_over_the_folds(tmp_path):
    folds = _folds(4)
    paths = _write_folds(tmp_path, folds)
    for k, lost in ((2, 3), (5, 1)):
        pd.DataFrame({"dataset": "dfew", "clip_id": [f"lost-{i}" for i in range(lost)],
                      "fold": pd.array([k] * lost, "Int8"), "label": [0] * lost,
                      "store_key": "x:0", "reason": "StoreError"}).to_parquet(
            paths[k - 1].with_name("pred-dfew.quarantine.parquet"))  # fmt: skip
    m = aggregate(paths, expect_folds=5)
    scored = sum(len(y) for y, _ in folds)
    assert (m["n"], m["n_unreadable"], m["n_clips"]) == (scored, 4, scored + 4)
    assert m["per_fold"]["2"]["n_unreadable"] == 3 and m["per_fold"]["5"]["n_unreadable"] == 1
    assert m["per_fold"]["1"]["n_unreadable"] == 0
    assert sum(f["n_clips"] for f in m["per_fold"].values()) == m["n_clips"]


def test_paired_p_value_of_identical_prediction_sets_is_one():
    folds = _folds(5)
    same = paired_comparison([(y, p, p) for y, p in folds], K, **SETTINGS)
    assert same["p_uar"] == same["p_war"] == 1.0
    assert same["diff_uar"] == same["diff_uar_lo"] == same["diff_uar_hi"] == 0.0
    assert same["n_paired"] == sum(len(y) for y, _ in folds)


def test_paired_comparison_matches_a_loop_on_the_same_resampled_clips():
    rng = np.random.default_rng(6)
    folds = _folds(6, accuracy=0.6)
    triples = [(y, p, np.where(rng.random(len(y)) < 0.15, y, p)) for y, p in folds]  # B better
    got = paired_comparison(triples, K, **SETTINGS)
    a = classification_metrics(np.concatenate([t[0] for t in triples]),
                               np.concatenate([t[1] for t in triples]), K)  # fmt: skip
    b = classification_metrics(np.concatenate([t[0] for t in triples]),
                               np.concatenate([t[2] for t in triples]), K)  # fmt: skip
    assert got["diff_uar"] == pytest.approx(a["uar"] - b["uar"], abs=1e-12)
    assert got["diff_war"] == pytest.approx(a["war"] - b["war"], abs=1e-12)
    loop = np.random.default_rng(7)
    diffs = []
    for _ in range(4000):  # one set of clip indices per fold, for both models
        idx = [loop.integers(0, len(t[0]), len(t[0])) for t in triples]
        y, pa, pb = (np.concatenate([t[j][i] for t, i in zip(triples, idx)]) for j in range(3))
        diffs.append(
            classification_metrics(y, pa, K)["uar"] - classification_metrics(y, pb, K)["uar"]
        )
    diffs = np.asarray(diffs)
    assert got["diff_uar_lo"] == pytest.approx(np.percentile(diffs, 2.5), abs=MC)
    assert got["diff_uar_hi"] == pytest.approx(np.percentile(diffs, 97.5), abs=MC)
    assert got["diff_uar_hi"] < 0 and got["p_uar"] < 0.01  # B is clearly better
    assert got["p_uar"] == pytest.approx(two_sided_p(diffs), abs=0.01)


def _seeded_triples(seed: int, shifts: list[float]):
    """Per fold `(labels, preds_a [S, n], preds_b [S, n])`: model B's seed s right on a share
    `shifts[s]` more of the clips A's seed s gets wrong (negative: fewer)."""
    rng = np.random.default_rng(seed)
    out = []
    for y, _ in _folds(seed):
        a, b = [], []
        for shift in shifts:
            _, pa = _model(rng, len(y), 0.6)
            pa = np.where(rng.random(len(y)) < 0.6, y, pa)
            better = np.where(rng.random(len(y)) < max(shift, 0), y, pa)
            worse = np.where(rng.random(len(y)) < max(-shift, 0), (y + 1) % K, better)
            a.append(pa), b.append(worse)
        out.append((y, np.stack(a), np.stack(b)))
    return out


def test_over_one_seed_the_paired_comparison_is_the_plain_one():
    triples = _seeded_triples(8, [0.1])
    got = paired_over_seeds(triples, K, **SETTINGS)
    plain = paired_comparison([(y, a[0], b[0]) for y, a, b in triples], K, **SETTINGS)
    assert got == pytest.approx(plain, abs=MC)  # the same bootstrap, to Monte Carlo error
    same = paired_over_seeds([(y, a, a) for y, a, _ in triples], K, **SETTINGS)
    assert same["p_uar"] == same["p_war"] == 1.0 and same["diff_uar_lo"] == 0.0


def test_over_seeds_the_difference_is_the_seeds_mean_resampled_over_clips_and_seeds():
    triples = _seeded_triples(9, [0.15, 0.05, 0.1])
    got = paired_over_seeds(triples, K, **SETTINGS)
    per_seed = [paired_comparison([(y, a[s], b[s]) for y, a, b in triples], K, **SETTINGS)
                for s in range(3)]  # fmt: skip
    assert got["diff_uar"] == pytest.approx(np.mean([c["diff_uar"] for c in per_seed]), abs=1e-12)
    assert got["n_paired"] == sum(len(y) for y, _, _ in triples)
    loop = np.random.default_rng(10)
    diffs = []
    for _ in range(3000):  # the same clips for every seed, then 3 seeds drawn with replacement
        idx = [loop.integers(0, len(y), len(y)) for y, _, _ in triples]
        y = np.concatenate([t[0][i] for t, i in zip(triples, idx)])
        d = []
        for s in loop.integers(0, 3, 3):
            pa, pb = (np.concatenate([t[j][s][i] for t, i in zip(triples, idx)]) for j in (1, 2))
            d.append(classification_metrics(y, pa, K)["uar"] - classification_metrics(y, pb, K)["uar"])  # fmt: skip
        diffs.append(np.mean(d))
    assert got["diff_uar_lo"] == pytest.approx(np.percentile(diffs, 2.5), abs=MC)
    assert got["diff_uar_hi"] == pytest.approx(np.percentile(diffs, 97.5), abs=MC)
    assert got["diff_uar_hi"] < 0 and got["p_uar"] < 0.01  # B better in every seed


def test_seeds_that_disagree_give_no_verdict_though_each_seed_is_clear():
    triples = _seeded_triples(11, [0.3, -0.3])  # B far better in seed 0, far worse in seed 1
    for s in (0, 1):
        assert paired_comparison([(y, a[s], b[s]) for y, a, b in triples], K, **SETTINGS)["p_uar"] < 0.01  # fmt: skip
    assert paired_over_seeds(triples, K, **SETTINGS)["p_uar"] > 0.3
    with pytest.raises(ValueError, match="expected predictions"):
        paired_over_seeds([(y, a, b[:1]) for y, a, b in triples], K, **SETTINGS)


def test_p_value_is_two_sided_and_never_zero():
    assert two_sided_p(np.zeros(99)) == 1.0
    assert two_sided_p(np.full(99, -1.0)) == pytest.approx(2 / 100)  # all below: 2 (1 + 0) / 100
    assert two_sided_p(np.full(99, 1.0)) == two_sided_p(np.full(99, -1.0))
    half = np.r_[np.full(50, -1.0), np.full(50, 1.0)]
    assert two_sided_p(half) == 1.0


def test_shuffled_labels_make_a_good_models_interval_cover_chance():
    folds = _folds(8, sizes=(300,) * 5, accuracy=0.8)
    good = pooled_interval(folds, K, **SETTINGS)
    assert good["uar_lo"] > 0.6  # far above chance, 1/K
    # Scored against shuffled labels the model is a guess: its UAR is 1/K in expectation and its
    # WAR the sum over classes of P(label) P(pred). A 95% interval covers them in ~95% of the
    # shuffles (one shuffle alone misses 1 time in 20).
    covered_uar = covered_war = 0
    shuffles = 100
    for s in range(shuffles):
        rng = np.random.default_rng(s)
        shuffled = [(rng.permutation(y), p) for y, p in folds]
        got = pooled_interval(shuffled, K, resamples=2000, confidence=0.95, seed=s)
        y, p = (np.concatenate(a) for a in zip(*shuffled))
        war = sum(np.mean(y == c) * np.mean(p == c) for c in range(K))
        covered_uar += got["uar_lo"] < 1 / K < got["uar_hi"]
        covered_war += got["war_lo"] < war < got["war_hi"]
    assert covered_uar >= 0.88 * shuffles and covered_war >= 0.88 * shuffles


def test_a_single_split_dataset_is_one_fold(tmp_path):
    (y, p) = _folds(9, sizes=(400,))[0]
    path = tmp_path / "ferv39k" / "pred-ferv39k.parquet"
    path.parent.mkdir()
    pd.DataFrame({"dataset": "ferv39k", "experiment": "unilearn", "head": "dfer",
                  "clip_id": [str(i) for i in range(400)], "fold": pd.array([None] * 400, "Int8"),
                  "split": "test", "label": y, "pred": p, "scores": [np.zeros(K, np.float32)] * 400,
                  "config_hash": "abc"}).to_parquet(path)  # fmt: skip
    m = aggregate([path])
    assert m == m | pooled_interval([(y, p)], K, **SETTINGS)
