"""Tables and figures from a runs tree: the paper's numbers beside ours with the gap, provenance
on every row, Table 3's ViT-B parameter counts, and figures that are real plots."""

from __future__ import annotations

import argparse
import json
import re
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from unilearn import layout
from unilearn.catalogue import FOLDS, get_label_set
from unilearn.config import load_config
from unilearn.report import figures, spec, tables

CONFIG = Path(__file__).parents[1] / "configs" / "demo.yaml"


def _fake_metrics(path: Path, dataset: str, uar: float, war: float, support: list[int]) -> None:
    classes = get_label_set(dataset).classes
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "dataset": dataset, "uar": uar, "war": war, "n": sum(support),
        "support": dict(zip(classes, support)), "folds": [1, 2, 3, 4, 5] if FOLDS[dataset] else [],
        "config_hash": "c0ffee" * 10,
    }))  # fmt: skip


def _fake_sidecars(runs: Path, cell: spec.Cell, rng: np.random.Generator) -> None:
    for pred in layout.predictions_for(runs, cell.run, cell.train, cell.test):
        pred.parent.mkdir(parents=True, exist_ok=True)
        usage = {str(b): rng.integers(10, 100, size=4).tolist() for b in (2, 3)}
        layout.sidecar_path(pred, ".expert_usage.json").write_text(
            json.dumps({"layers": usage, "config_hash": "c0ffee"})
        )
        classes = get_label_set(cell.test).classes
        centres = pd.DataFrame({
            "class_id": range(len(classes)), "class_name": classes, "n": 5,
            "centre": [rng.normal(size=8).astype(np.float32).tolist() for _ in classes],
            "config_hash": "c0ffee",
        })  # fmt: skip
        centres.to_parquet(layout.sidecar_path(pred, ".centres.parquet"))


def _fake_predictions(runs: Path, cell: spec.Cell, weights: str, accuracy: float) -> None:
    """Each fold's test clips (the same clips and labels for every run tested on that dataset),
    predicted right with probability `accuracy`."""
    k = get_label_set(cell.test).num_classes
    for pred in layout.predictions_for(runs, cell.run, cell.train, cell.test, weights):
        fold = layout.parse_target(pred.parent.name)[1] if FOLDS[cell.test] else None
        clips = np.random.default_rng([k, fold or 0])  # the test set: one per dataset and fold
        labels = clips.integers(0, k, 200)
        model = np.random.default_rng(
            zlib.crc32(f"{cell.run} {cell.train} {weights} {fold}".encode())
        )
        right = model.random(200) < accuracy
        preds = np.where(right, labels, (labels + model.integers(1, k, 200)) % k)
        pred.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({
            "dataset": cell.test, "clip_id": [f"{cell.test}-{fold}-{i}" for i in range(200)],
            "fold": pd.array([fold] * 200, dtype="Int8"), "split": "test", "label": labels,
            "pred": preds, "config_hash": "c0ffee",
        }).to_parquet(pred)  # fmt: skip


@pytest.fixture
def runs_tree(tmp_path):
    return make_runs_tree(tmp_path)


def make_runs_tree(tmp_path: Path):
    """Metrics for every table and figure of the demo config, plus manifests to hash."""
    cfg = load_config(CONFIG)
    runs, manifests = tmp_path / "runs", tmp_path / "manifests"
    manifests.mkdir()
    for name in ("dfew", "mafw", "ferv39k", "affectnet", "voxceleb2"):
        pd.DataFrame({"clip_id": [name]}).to_parquet(manifests / f"{name}.parquet")
    rng = np.random.default_rng(0)
    for target in spec.TABLES + spec.FIGURES:
        for cell in spec.required_cells(target, cfg):
            k = get_label_set(cell.test).num_classes
            support = [10 * (i + 1) for i in range(k)]
            score = 0.5 + 0.1 * (cell.run == "unilearn")
            for weights, better in (("last", 0.0), ("best", 0.02), ("val", 0.01)):
                path = layout.metrics_path(runs, cell.run, cell.train, cell.test, weights)
                _fake_metrics(path, cell.test, score + better, score + better + 0.05, support)
                _fake_predictions(runs, cell, weights, score + better)
            if target in ("figure4a", "figure4b"):
                _fake_sidecars(runs, cell, rng)
    return cfg, runs, manifests


def _run_tables(table: str, runs: Path, manifests: Path, out: Path) -> pd.DataFrame:
    args = argparse.Namespace(table=table, config=[CONFIG], runs=runs, manifests=manifests,
                              out=out, overrides=[])  # fmt: skip
    assert tables.main(args) == 0
    return pd.read_csv(out)


def test_table1_puts_paper_numbers_and_gap_beside_ours(runs_tree, tmp_path):
    _, runs, manifests = runs_tree
    frame = _run_tables("table1", runs, manifests, tmp_path / "results" / "table1.csv")
    row = frame[
        (frame.method == "UniLearn") & (frame.dataset == "dfew") & (frame.weights == "last")
    ].iloc[0]
    assert (row.uar, row.war) == (60.0, 65.0)
    assert (row.paper_uar, row.paper_war) == (66.80, 76.68)
    assert row.gap_uar == pytest.approx(60.0 - 66.80) and row.gap_war == pytest.approx(65.0 - 76.68)
    assert set(frame.method) == {"chance", "VideoMAE", "UniLearn"}
    assert set(frame.dataset) == {"dfew", "ferv39k", "mafw"}
    md = (tmp_path / "results" / "table1.md").read_text()
    assert re.search(r"\| UniLearn \| 60\.00 \[[\d.]+, [\d.]+\] \(66\.80, -6\.80\) \|", md)
    assert "synthetic" in md


def test_tables_show_the_last_the_best_and_the_validation_epoch_labelled(runs_tree, tmp_path):
    _, runs, manifests = runs_tree
    frame = _run_tables("table1", runs, manifests, tmp_path / "t1.csv")
    assert list(dict.fromkeys(frame.weights)) == ["last", "best", "val"]
    assert all(len(frame[frame.weights == w]) == 9 for w in ("last", "best", "val"))
    best = frame[
        (frame.method == "UniLearn") & (frame.dataset == "dfew") & (frame.weights == "best")
    ]
    assert (best.uar.iloc[0], best.war.iloc[0]) == (62.0, 67.0)  # read from the .best metrics
    md = (tmp_path / "t1.md").read_text()
    last_at = md.index("**Last epoch**")
    best_at = md.index("**Best epoch on the test split (as the authors report)**")
    val_at = md.index("**Best epoch on a validation split**")
    unilearn_last = re.search(r"\| UniLearn \| 60\.00 \[.*?\] \(66\.80, -6\.80\)", md).start()
    assert last_at < unilearn_last < best_at
    unilearn_best = re.search(r"\| UniLearn \| 62\.00 \[.*?\] \(66\.80, -4\.80\)", md).start()
    assert best_at < unilearn_best < val_at
    assert val_at < re.search(r"\| UniLearn \| 61\.00 \[.*?\] \(66\.80, -5\.80\)", md).start()
    # Table 5: both parts under each of the three headings
    _run_tables("table5", runs, manifests, tmp_path / "t5.csv")
    assert (tmp_path / "t5.md").read_text().count("*components*") == 3


def test_without_a_validation_split_the_tables_need_no_val_metrics(runs_tree, tmp_path):
    _, runs, manifests = runs_tree
    for path in runs.glob("metrics/**/*.val.json"):
        path.unlink()
    args = argparse.Namespace(table="table1", config=[CONFIG], runs=runs, manifests=manifests,
                              out=tmp_path / "t1.csv", overrides=["finetune.selection.validation=null",
                                                                  "finetune.selection.best=test"])  # fmt: skip
    assert tables.main(args) == 0
    assert list(dict.fromkeys(pd.read_csv(tmp_path / "t1.csv").weights)) == ["last", "best"]
    md = (tmp_path / "t1.md").read_text()
    assert "validation split" not in md and "**Best epoch on the 2-clip test split (ours" in md


def test_chance_row_is_the_best_constant_prediction(runs_tree, tmp_path):
    _, runs, manifests = runs_tree
    frame = _run_tables("table1", runs, manifests, tmp_path / "t1.csv")
    chance = frame[(frame.method == "chance") & (frame.dataset == "mafw")].iloc[0]
    support = [10 * (i + 1) for i in range(11)]
    assert chance.uar == pytest.approx(100 / 11, abs=0.01)
    assert chance.war == pytest.approx(100 * max(support) / sum(support), abs=0.01)
    assert pd.isna(chance.paper_uar)


def test_every_row_records_git_sha_config_hash_and_manifest_hash(runs_tree, tmp_path):
    _, runs, manifests = runs_tree
    for table in spec.TABLES:
        frame = _run_tables(table, runs, manifests, tmp_path / f"{table}.csv")
        assert frame.git_sha.notna().all() and (frame.git_sha != "").all()
        assert frame.manifest_hash.str.fullmatch(r"[0-9a-f]{16}").all()
        methods = frame[frame.method != "chance"]
        assert (methods.config_hash == "c0ffee" * 10).all()


def test_table3_reports_vit_b_parameter_counts_near_the_papers(runs_tree, tmp_path):
    _, runs, manifests = runs_tree
    frame = _run_tables("table3", runs, manifests, tmp_path / "t3.csv")
    frame = frame[frame.weights == "best"].set_index("method")
    # Paper Table 3 (test/train, M): ViT 86/86, UniLearn 90/101, ViT-MoE 115/285.
    assert frame.loc["ViT", "vitb_params_total_M"] == pytest.approx(86, abs=1.5)
    assert frame.loc["UniLearn", "vitb_params_active_M"] == pytest.approx(90, abs=1.5)
    assert frame.loc["UniLearn", "vitb_params_total_M"] == pytest.approx(101, abs=1.5)
    assert frame.loc["ViT-MoE", "vitb_params_total_M"] == pytest.approx(285, abs=3)
    assert frame.loc["UniLearn", "params_total_M"] < 10  # the demo's tiny model


def test_table5_has_components_and_position_parts(runs_tree, tmp_path):
    _, runs, manifests = runs_tree
    frame = _run_tables("table5", runs, manifests, tmp_path / "t5.csv")
    assert list(dict.fromkeys(frame.part)) == ["components", "position"]
    later = frame[frame.method == "later"].iloc[0]
    assert (later.paper_uar, later.paper_war) == (43.41, 53.65)


def test_missing_metrics_error_names_the_file_and_the_run(runs_tree, tmp_path):
    _, runs, manifests = runs_tree
    gone = layout.metrics_path(runs, "videomae", "mafw", "mafw", "best")
    gone.unlink()
    with pytest.raises(FileNotFoundError, match="metrics/videomae/mafw/mafw.best.json.*videomae"):
        _run_tables("table1", runs, manifests, tmp_path / "t1.csv")


@pytest.mark.parametrize("name", spec.FIGURES)
def test_figures_are_real_plots(runs_tree, tmp_path, name):
    import matplotlib.image

    _, runs, _ = runs_tree
    out = tmp_path / f"{name}.png"
    args = argparse.Namespace(figure=name, config=[CONFIG], runs=runs, manifests=None, out=out,
                              overrides=[])  # fmt: skip
    assert figures.main(args) == 0
    # vector PDF beside; provenance in the metadata and the sidecar, not drawn in the image
    pdf = figures.pdf_path(out).read_bytes()
    assert pdf.startswith(b"%PDF") and b"git " in pdf
    from PIL import Image

    assert "config demo; git " in Image.open(out).info["Description"]
    assert json.loads(figures.sidecar_path(out).read_text())["config"] == "demo"
    pixels = matplotlib.image.imread(out)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 500
    # A plot, not a blank canvas: many distinct colours.
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 50


PAIRED = ["diff_uar", "diff_uar_lo", "diff_uar_hi", "p_uar",
          "diff_war", "diff_war_lo", "diff_war_hi", "p_war"]  # fmt: skip


def test_every_cell_has_its_interval_and_every_ablation_its_paired_comparison(runs_tree, tmp_path):
    _, runs, manifests = runs_tree
    t1 = _run_tables("table1", runs, manifests, tmp_path / "t1.csv")
    models = t1[t1.method != "chance"]
    assert models[["uar_lo", "uar_hi", "war_lo", "war_hi"]].notna().all().all()
    assert (models.uar_lo <= models.uar_hi).all() and (models.war_lo <= models.war_hi).all()
    # Table 1: VideoMAE against UniLearn, on each test set and for each reported weights
    compared = t1[t1[PAIRED].notna().all(axis=1)]
    assert set(compared.method) == {"VideoMAE"} and len(compared) == 3 * t1.weights.nunique()
    assert (compared.reference == "UniLearn").all()
    clips = {"dfew": 1000, "mafw": 1000, "ferv39k": 200}  # every clip of the fake test sets
    assert (compared.n_paired == compared.dataset.map(clips)).all()
    assert (
        (compared.diff_uar_lo <= compared.diff_uar) & (compared.diff_uar <= compared.diff_uar_hi)
    ).all()
    assert ((compared.p_uar > 0) & (compared.p_uar <= 1)).all()
    md = (tmp_path / "t1.md").read_text()
    assert re.search(
        r"\| VideoMAE \| UniLearn \| [+-]\d+\.\d\d \[[+-]\d+\.\d, [+-]\d+\.\d\] p ", md
    )
    # Table 5: every row but the reference (UniLearn is both D+M+J and "later")
    t5 = _run_tables("table5", runs, manifests, tmp_path / "t5.csv")
    last = t5[t5.weights == "last"]
    assert set(last[last.diff_uar.isna()].method) == {"D+M+J", "later"}
    position = last[last.part == "position"]
    assert (position[position.diff_uar.notna()].reference == "later").all()
    # Table 4: SFER-only on AffectNet-7 against the joint model on the same test set
    t4 = _run_tables("table4", runs, manifests, tmp_path / "t4.csv")
    sfer = t4[(t4.method == "SFER-only") & (t4.weights == "last")].iloc[0]
    assert sfer.reference == "Joint (UniLearn)" and sfer.dataset == "affectnet7"


def test_identical_predictions_differ_by_zero_with_p_one(runs_tree, tmp_path):
    _, runs, manifests = runs_tree
    for weights in layout.WEIGHTS:  # VideoMAE predicts exactly what UniLearn predicts
        for ours, theirs in zip(layout.predictions_for(runs, "videomae", "dfew", "dfew", weights),
                                layout.predictions_for(runs, "unilearn", "dfew", "dfew", weights)):  # fmt: skip
            ours.write_bytes(theirs.read_bytes())
    frame = _run_tables("table1", runs, manifests, tmp_path / "t1.csv")
    row = frame[(frame.method == "VideoMAE") & (frame.dataset == "dfew")].iloc[0]
    assert (row.diff_uar, row.diff_uar_lo, row.diff_uar_hi, row.p_uar) == (0, 0, 0, 1)
    assert (row.diff_war, row.p_war) == (0, 1)


def test_intervals_come_from_the_metrics_file_when_it_has_them(runs_tree, tmp_path):
    _, runs, manifests = runs_tree
    path = layout.metrics_path(runs, "unilearn", "dfew", "dfew")
    metrics = json.loads(path.read_text())
    path.write_text(json.dumps(metrics | {"uar_lo": 0.5512, "uar_hi": 0.6489, "war_lo": 0.6,
                                          "war_hi": 0.7}))  # fmt: skip
    frame = _run_tables("table1", runs, manifests, tmp_path / "t1.csv")
    row = frame[(frame.method == "UniLearn") & (frame.dataset == "dfew")].iloc[0]
    assert (row.uar_lo, row.uar_hi, row.war_lo, row.war_hi) == (55.12, 64.89, 60.0, 70.0)
    assert "| UniLearn | 60.00 [55.1, 64.9] (66.80, -6.80) |" in (tmp_path / "t1.md").read_text()


def test_a_cell_whose_test_lost_clips_is_marked(runs_tree, tmp_path):
    _, runs, manifests = runs_tree
    path = layout.metrics_path(runs, "videomae", "mafw", "mafw")
    metrics = json.loads(path.read_text())
    path.write_text(json.dumps(metrics | {"n_unreadable": 3, "n_clips": metrics["n"] + 3}))
    frame = _run_tables("table1", runs, manifests, tmp_path / "t1.csv")
    row = frame[
        (frame.method == "VideoMAE") & (frame.dataset == "mafw") & (frame.weights == "last")
    ]
    assert (row.n_unreadable.iloc[0], row.n_clips.iloc[0] - row.n_scored.iloc[0]) == (3, 3)
    md = (tmp_path / "t1.md").read_text()
    assert md.count("†") == 3  # its UAR and WAR cells, and the footnote
    assert "† the test lost clips" in md and "VideoMAE on MAFW: 3 of" in md


def test_missing_predictions_name_the_file(runs_tree, tmp_path):
    _, runs, manifests = runs_tree
    gone = layout.predictions_for(runs, "videomae", "dfew", "dfew")[2]
    gone.unlink()
    with pytest.raises(FileNotFoundError, match="videomae/dfew-fold3/pred-dfew.parquet"):
        _run_tables("table1", runs, manifests, tmp_path / "t1.csv")
