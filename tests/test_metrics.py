"""UAR/WAR as the paper defines them, and the 5-fold pooling of `unilearn aggregate`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.metrics import confusion_matrix as sk_confusion

from unilearn.cli import main as cli_main
from unilearn.engine.aggregate import aggregate, classification_metrics, confusion_matrix, uar, war


def _fold_predictions(tmp_path, rng, n_folds=5, dataset="dfew", k=7, config_hash="abc"):
    paths, frames = [], []
    for fold in range(1, n_folds + 1):
        n = int(rng.integers(20, 60))  # unequal fold sizes: pooled != mean of folds
        label = rng.integers(0, k, n)
        pred = np.where(rng.random(n) < 0.5, label, rng.integers(0, k, n))
        scores = rng.random((n, k)).astype(np.float32)
        df = pd.DataFrame(
            {
                "dataset": dataset,
                "clip_id": [f"{fold}-{i:05d}" for i in range(n)],
                "fold": fold,
                "split": "test",
                "label": label,
                "pred": pred,
                "scores": list(scores),
                "config_hash": config_hash,
                "experiment": "unilearn",
                "head": "dfer",
            }
        )
        path = tmp_path / f"fold{fold}.parquet"
        df.to_parquet(path, index=False)
        paths.append(path)
        frames.append(df)
    return paths, pd.concat(frames)


def test_uar_war_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 11, 500)
    p = np.where(rng.random(500) < 0.4, y, rng.integers(0, 11, 500))
    conf = confusion_matrix(y, p, 11)
    np.testing.assert_array_equal(conf, sk_confusion(y, p, labels=range(11)))
    assert uar(conf) == pytest.approx(balanced_accuracy_score(y, p), abs=1e-12)
    assert war(conf) == pytest.approx(accuracy_score(y, p), abs=1e-12)


def test_uar_ignores_classes_without_test_samples():
    m = classification_metrics([0, 0, 1], [0, 1, 1], 3, ["a", "b", "c"])
    assert m["uar"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["per_class_recall"]["c"] is None


def test_a_test_set_without_any_sample_has_no_uar_and_warns_nothing():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "Mean of empty slice" would raise here
        m = classification_metrics([], [], 3, ["a", "b", "c"])
        assert np.isnan(m["uar"]) and m["war"] == 0.0 and m["n"] == 0
        assert set(m["per_class_recall"].values()) == {None}
        assert uar(confusion_matrix([2, 2], [2, 0], 3)) == 0.5  # only class c has support


def test_pooled_uar_matches_sklearn(tmp_path):
    paths, pool = _fold_predictions(tmp_path, np.random.default_rng(1))
    out = tmp_path / "metrics.json"
    assert cli_main(["aggregate", *map(str, paths), "--out", str(out), "--expect-folds", "5"]) == 0
    m = json.loads(out.read_text())
    assert m["uar"] == pytest.approx(balanced_accuracy_score(pool.label, pool.pred), abs=1e-12)
    assert m["war"] == pytest.approx(accuracy_score(pool.label, pool.pred), abs=1e-12)
    assert m["n"] == len(pool) and m["folds"] == [1, 2, 3, 4, 5]
    assert np.array(m["confusion"]).sum() == len(pool)
    # pooling once is not the mean of the per-fold numbers
    assert m["uar"] != pytest.approx(m["per_fold_mean"]["uar"], abs=1e-9)


def test_pooled_metrics_count_quarantined_clips_without_scoring_them(tmp_path):
    paths, pool = _fold_predictions(tmp_path, np.random.default_rng(2))
    quarantine = pd.DataFrame({"dataset": "dfew", "clip_id": ["99999"], "fold": [2], "label": [3],
                               "store_key": ["dfew/shard-00001.ulc:0"], "reason": ["StoreError"]})  # fmt: skip
    quarantine.to_parquet(tmp_path / "fold2.quarantine.parquet")
    m = aggregate(paths, expect_folds=5)
    assert (m["n"], m["n_unreadable"], m["n_clips"]) == (len(pool), 1, len(pool) + 1)
    assert m["war"] == pytest.approx(accuracy_score(pool.label, pool.pred), abs=1e-12)


def test_aggregate_refuses_inconsistent_inputs(tmp_path):
    rng = np.random.default_rng(2)
    paths, _ = _fold_predictions(tmp_path, rng, n_folds=2)
    with pytest.raises(ValueError, match="expected 5 folds"):
        aggregate(paths, expect_folds=5)
    with pytest.raises(ValueError, match="predicted more than once"):
        aggregate([paths[0], paths[0]])
    other = tmp_path / "other"
    other.mkdir()
    more, _ = _fold_predictions(other, rng, n_folds=3, config_hash="def")
    with pytest.raises(ValueError, match="mix several values of config_hash"):
        aggregate([paths[0], more[2]])
