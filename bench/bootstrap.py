"""The bootstrap interval of a pooled UAR/WAR (issue 21): 10,000 resamples of 50,000 test clips
in 5 folds, 7 classes, on one core (the goal: under 2 s), against baselines measured in this run.

Printed, all measured in this run (the machine is shared and noisy: compare the ratios):
  - ours (`unilearn.report.bootstrap.pooled_interval`: one multinomial draw per fold over the
    (class, right/wrong) cells), the absolute time of the full job;
  - the paired comparison of two models on the same clips, likewise;
  - per resample, ours against: drawing clip indices in numpy and scoring by bincount (the
    straightforward vectorised resampler), `scipy.stats.bootstrap` (percentile, each fold its own
    sample) and a plain Python loop over `classification_metrics`; the baselines run fewer
    resamples (--baseline-resamples) and are scaled per resample.

    python bench/bootstrap.py [--clips 50000] [--resamples 10000] [--baseline-resamples 100]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core, before numpy loads

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from unilearn.engine.aggregate import classification_metrics  # noqa: E402
from unilearn.report.bootstrap import paired_comparison, pooled_interval  # noqa: E402

K = 7


def make_folds(clips: int, folds: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for n in np.full(folds, clips // folds):
        labels = rng.choice(K, n, p=np.arange(1, K + 1) / (K * (K + 1) / 2))
        preds = np.where(rng.random(n) < 0.55, labels, rng.integers(0, K, n))
        out.append((labels, preds))
    return out


def _uar_war_rows(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """UAR/WAR of each row of `[batch, clips]` codes (label * K + pred), one bincount."""
    rows = np.arange(len(codes))[:, None] * K * K
    conf = np.bincount((codes + rows).ravel(), minlength=len(codes) * K * K).reshape(-1, K, K)
    support = conf.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, np.diagonal(conf, axis1=1, axis2=2) / support, np.nan)
    return np.nanmean(recall, -1), np.trace(conf, axis1=1, axis2=2) / conf.sum((1, 2))


def index_resampler(folds, resamples: int, seed: int) -> None:
    """Clip indices drawn per fold (in chunks of 20 resamples), pooled, scored by bincount."""
    rng = np.random.default_rng(seed)
    codes = [y * K + p for y, p in folds]
    uars = []
    for start in range(0, resamples, 20):
        b = min(20, resamples - start)
        drawn = np.concatenate([c[rng.integers(0, len(c), (b, len(c)))] for c in codes], axis=1)
        uars.append(_uar_war_rows(drawn)[0])
    np.percentile(np.concatenate(uars), [2.5, 97.5])


def scipy_bootstrap(folds, resamples: int, seed: int) -> None:
    from scipy import stats

    codes = [y * K + p for y, p in folds]

    def statistic(*samples, axis=-1):
        return _uar_war_rows(np.concatenate(samples, axis=axis).reshape(-1, sum(map(len, codes))))[
            0
        ]

    stats.bootstrap(codes, statistic, vectorized=True, paired=False, n_resamples=resamples,
                    batch=20, method="percentile", random_state=seed)  # fmt: skip


def python_loop(folds, resamples: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    uars = []
    for _ in range(resamples):
        idx = [rng.integers(0, len(y), len(y)) for y, _ in folds]
        labels = np.concatenate([y[i] for (y, _), i in zip(folds, idx)])
        preds = np.concatenate([p[i] for (_, p), i in zip(folds, idx)])
        uars.append(classification_metrics(labels, preds, K)["uar"])
    np.percentile(uars, [2.5, 97.5])


def timed(fn, *args, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=50_000)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--baseline-resamples", type=int, default=100)
    args = parser.parse_args()
    folds = make_folds(args.clips, args.folds)
    ours = timed(lambda: pooled_interval(folds, K, resamples=args.resamples, confidence=0.95,
                                         seed=0))  # fmt: skip
    print(f"{args.resamples} resamples x {args.clips} clips ({args.folds} folds, {K} classes), "
          f"one core: ours {ours:.3f} s (goal < 2 s)")  # fmt: skip
    other = [(y, np.where(np.random.default_rng(1).random(len(y)) < 0.1, y, p)) for y, p in folds]
    triples = [(y, p, q) for (y, p), (_, q) in zip(folds, other)]
    paired = timed(lambda: paired_comparison(triples, K, resamples=args.resamples,
                                             confidence=0.95, seed=0))  # fmt: skip
    print(f"  paired comparison of two models on the same clips: {paired:.3f} s")
    per = ours / args.resamples
    b = args.baseline_resamples
    for name, fn, n in (("numpy index resampler", index_resampler, b),
                        ("scipy.stats.bootstrap", scipy_bootstrap, b),
                        ("python loop", python_loop, max(b // 5, 1))):  # fmt: skip
        t = timed(fn, folds, n, 0, repeat=1)
        full = t / n * args.resamples
        print(f"  {name:<22} {t:.3f} s for {n} resamples = {full:.1f} s for {args.resamples} "
              f"(extrapolated): ours is {t / n / per:.0f}x faster")  # fmt: skip


if __name__ == "__main__":
    main()
