"""W&B runs: the environment decides where the config says nothing, names and groups tell sweep
points apart, the run config says what a run is, a resumed run continues the same W&B run, an
evaluation logs its confusion matrix and per-class recall, and a pooled cell is a run of its own.
W&B itself is replaced by a fake module that records every call."""

from __future__ import annotations

import hashlib
import sys
import types
from pathlib import Path

import pytest

from unilearn.config import config_hash, load_config
from unilearn.engine.aggregate import classification_metrics
from unilearn.engine.wandb_log import log_evaluation, log_pooled, run_for, run_identity

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
LOGGED = ["wandb.mode=null"]  # the demo runs without W&B; these tests log it
SECRET = "0123456789abcdef-not-a-real-key-0123456789"


class FakeRun:
    def __init__(self, calls: list, **kwargs) -> None:
        self.kwargs, self.id = kwargs, kwargs["id"]
        self.dir = str(Path(kwargs["dir"]) / "wandb" / f"offline-run-{self.id}" / "files")
        self.history: list[tuple[int, dict]] = []
        self.summary: dict = {}
        self.exit_code = None
        calls.append(self)

    def log(self, metrics: dict, step: int) -> None:
        self.history.append((step, dict(metrics)))

    def finish(self, exit_code: int = 0) -> None:
        self.exit_code = exit_code


@pytest.fixture
def fake_wandb(monkeypatch):
    """A stand-in `wandb` module; `.runs` holds every run started."""
    module = types.ModuleType("wandb")
    module.runs = []
    module.init = lambda **kw: FakeRun(module.runs, **kw)
    module.Settings = lambda **kw: kw
    module.Table = lambda columns, data: {"columns": columns, "data": data}
    module.plot = types.SimpleNamespace(
        confusion_matrix=lambda y_true, preds, class_names: {
            "y": y_true,
            "p": preds,
            "classes": class_names,
        }  # fmt: skip
    )
    monkeypatch.setitem(sys.modules, "wandb", module)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    return module


def _run(cfg, tmp_path, **kwargs):
    kwargs = {"job_type": "finetune", "group": "g", "name": "n", "run_dir": tmp_path,
              "is_main": True} | kwargs  # fmt: skip
    return run_for(cfg, **kwargs)


def test_run_config_says_what_the_run_is(fake_wandb, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    cfg = load_config(CONFIGS / "demo.yaml", LOGGED)
    init = tmp_path / "init.pt"
    init.write_bytes(b"weights")
    identity = run_identity("unilearn@n_experts=4", "unilearn", "dfew", 3, init)
    run = _run(cfg, tmp_path, group="demo/unilearn@n_experts=4", name="dfew-fold3",
               identity=identity)  # fmt: skip
    run.log({"train/loss": 1.25}, step=7)
    run.summary({"test/uar": 0.625})
    run.finish()

    (logged,) = fake_wandb.runs
    kw = logged.kwargs
    assert (kw["group"], kw["name"], kw["job_type"]) == ("demo/unilearn@n_experts=4", "dfew-fold3",
                                                         "finetune")  # fmt: skip
    config = kw["config"]
    assert config["experiment"] == "unilearn" and config["run"] == "unilearn@n_experts=4"
    assert (config["sweep"], config["sweep_value"]) == ("n_experts", "4")
    assert (config["dataset"], config["fold"]) == ("dfew", 3)
    assert config["init"] == str(init)
    assert config["init_sha256"] == hashlib.sha256(b"weights").hexdigest()
    assert config["config_hash"] == config_hash(cfg) and config["git_sha"]
    assert kw["project"] == "unilearn-demo" and kw["mode"] == "offline"
    assert SECRET not in repr(kw)  # nor in the W&B config, nor in any file of the run directory
    written = [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()]
    assert written and not any(SECRET.encode() in data for data in written)
    assert logged.history == [(7, {"train/loss": 1.25})] and logged.summary == {"test/uar": 0.625}
    assert logged.exit_code == 0


def test_a_sweep_points_test_and_pooled_runs_join_its_fine_tuning_group(fake_wandb, tmp_path):
    """The groups come from the code: `log_test_run` reads the run name from the checkpoint's
    meta, `log_pooled` from the aggregated cell; each sweep point gets `<config>/<point>` and its
    parsed sweep key and value, the plain experiment none."""
    from types import SimpleNamespace

    from unilearn.engine.scoring import log_test_run

    cfg = load_config(CONFIGS / "demo.yaml", LOGGED)
    metrics = classification_metrics([0, 1], [0, 0], 7, None)
    points = {"unilearn": (None, None), "unilearn@n_experts=4": ("n_experts", "4"),
              "unilearn@sfer_proportion=0.25": ("sfer_proportion", "0.25")}  # fmt: skip
    for point in points:
        meta = {"experiment": "unilearn", "run": point, "dataset": "ferv39k"}
        log_test_run(cfg, tmp_path / point / "ferv39k.parquet", meta, "ferv39k", None, metrics,
                     SimpleNamespace(usage={}), None)  # fmt: skip
        log_pooled(cfg, metrics | {"dataset": "ferv39k", "experiment": "unilearn"}, point,
                   "ferv39k", run_dir=tmp_path / point)  # fmt: skip
    assert len(fake_wandb.runs) == 2 * len(points)
    for (point, (sweep, value)), (test, pooled) in zip(
        points.items(), zip(fake_wandb.runs[::2], fake_wandb.runs[1::2])
    ):
        assert test.kwargs["group"] == pooled.kwargs["group"] == f"demo/{point}"
        assert (test.kwargs["job_type"], pooled.kwargs["job_type"]) == ("evaluate", "aggregate")
        for run in (test, pooled):
            c = run.kwargs["config"]
            assert (c["experiment"], c["run"], c["sweep"], c["sweep_value"]) == (
                "unilearn", point, sweep, value)  # fmt: skip
        assert (
            test.kwargs["name"] == "ferv39k-on-ferv39k"
            and pooled.kwargs["name"] == "ferv39k-pooled"
        )


def test_a_test_of_a_checkpoint_without_an_experiment_is_logged_as_imported(fake_wandb, tmp_path):
    from types import SimpleNamespace

    from unilearn.engine.scoring import log_test_run

    cfg = load_config(CONFIGS / "demo.yaml", LOGGED)
    metrics = classification_metrics([0, 1], [0, 1], 7, None)
    meta = {"model_name": "vit_base_patch16_160", "labels": {"dfer": "dfer7"}}  # `--model` import
    log_test_run(cfg, tmp_path / "dfew-fold1.parquet", meta, "dfew", 1, metrics,
                 SimpleNamespace(usage={}), None)  # fmt: skip
    (logged,) = fake_wandb.runs
    assert (logged.kwargs["group"], logged.kwargs["name"]) == (
        "demo/imported",
        "dfew-fold1-on-dfew",
    )
    assert logged.kwargs["config"]["experiment"] == "imported"
    assert logged.summary["test/uar"] == 1.0


@pytest.mark.parametrize(
    ("configured", "env", "flag", "expected"),
    [
        (None, None, None, "offline"),  # nothing said: offline, no network needed
        (None, "disabled", None, None),  # the environment decides where the config is silent
        (None, "online", None, "online"),
        ("offline", "online", None, "offline"),  # the config wins over the environment
        ("disabled", None, "offline", "offline"),  # and `--wandb` over both
    ],
)
def test_mode_comes_from_flag_then_config_then_environment(
    fake_wandb, tmp_path, monkeypatch, configured, env, flag, expected
):
    if env is not None:
        monkeypatch.setenv("WANDB_MODE", env)
    cfg = load_config(CONFIGS / "demo.yaml", [f"wandb.mode={configured or 'null'}"])
    run = _run(cfg, tmp_path, mode=flag)
    assert run.active == (expected is not None)
    if expected is not None:
        assert fake_wandb.runs[-1].kwargs["mode"] == expected
    else:
        assert not fake_wandb.runs and not any(tmp_path.iterdir())


def test_project_comes_from_environment_when_the_config_has_none(fake_wandb, tmp_path, monkeypatch):
    cfg = load_config(CONFIGS / "paper.yaml")
    _run(cfg, tmp_path / "a")
    monkeypatch.setenv("WANDB_PROJECT", "my-project")
    _run(cfg, tmp_path / "b")
    assert [r.kwargs["project"] for r in fake_wandb.runs] == ["unilearn", "my-project"]


def test_resumed_run_continues_the_same_wandb_run(fake_wandb, tmp_path):
    cfg = load_config(CONFIGS / "demo.yaml", LOGGED)
    for _ in range(2):  # a requeued job starts the run again in the same run directory
        _run(cfg, tmp_path).finish()
    first, second = fake_wandb.runs
    assert first.id == second.id and second.kwargs["resume"] == "allow"
    other = _run(cfg, tmp_path / "another-run")
    assert other.run.id != first.id


def test_only_rank0_logs(fake_wandb, tmp_path):
    cfg = load_config(CONFIGS / "demo.yaml", LOGGED)
    run = _run(cfg, tmp_path, is_main=False)
    run.log({"x": 1}, step=0)
    run.summary({"y": 2})
    log_evaluation(run, classification_metrics([0], [0], 2, ["a", "b"]))
    run.finish()
    assert run.dir is None and not fake_wandb.runs and not any(tmp_path.iterdir())


def test_evaluation_logs_confusion_matrix_and_per_class_recall(fake_wandb, tmp_path):
    cfg = load_config(CONFIGS / "demo.yaml", LOGGED)
    metrics = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], 2, ["happy", "sad"])
    run = _run(cfg, tmp_path, job_type="evaluate")
    log_evaluation(run, metrics, usage={"2": [3, 1]})
    run.finish()
    (logged,) = fake_wandb.runs
    assert logged.summary["test/recall/happy"] == 0.5 and logged.summary["test/recall/sad"] == 1.0
    assert logged.summary["test/uar"] == 0.75 and logged.summary["experts/block2/e0"] == 0.75
    ((step, plots),) = logged.history
    counts = {(t, p): n for t, p, n in plots["test/confusion_counts"]["data"]}
    assert counts == {("happy", "happy"): 1, ("happy", "sad"): 1, ("sad", "happy"): 0,
                      ("sad", "sad"): 2}  # fmt: skip
    matrix = plots["test/confusion_matrix"]
    assert sorted(zip(matrix["y"], matrix["p"])) == [(0, 0), (0, 1), (1, 1), (1, 1)]


def test_pooled_cell_is_a_run_in_the_group_of_its_folds(fake_wandb, tmp_path):
    cfg = load_config(CONFIGS / "demo.yaml", LOGGED)
    result = classification_metrics([0, 1, 2, 3], [0, 1, 2, 0], 7, None) | {
        "dataset": "dfew", "experiment": "unilearn", "folds": [1, 2, 3, 4, 5]}  # fmt: skip
    log_pooled(cfg, result, "unilearn", "dfew", run_dir=tmp_path)
    (logged,) = fake_wandb.runs
    kw = logged.kwargs
    assert (kw["group"], kw["job_type"]) == ("demo/unilearn", "aggregate")
    assert "table1" in kw["config"]["tables"] and kw["config"]["folds"] == [1, 2, 3, 4, 5]
    assert logged.summary["pooled/uar"] == result["uar"]
    assert logged.summary["pooled/war"] == 0.75


def test_pooled_cell_logs_its_bootstrap_interval(fake_wandb, tmp_path):
    cfg = load_config(CONFIGS / "demo.yaml", LOGGED)
    result = classification_metrics([0, 1, 2, 3], [0, 1, 2, 0], 7, None) | {
        "dataset": "dfew", "experiment": "unilearn", "folds": [1, 2, 3, 4, 5],
        "uar_lo": 0.41, "uar_hi": 0.47, "war_lo": 0.51, "war_hi": 0.56}  # fmt: skip
    log_pooled(cfg, result, "unilearn", "dfew", run_dir=tmp_path)
    (logged,) = fake_wandb.runs
    assert (logged.summary["pooled/uar_lo"], logged.summary["pooled/uar_hi"]) == (0.41, 0.47)
    assert (logged.summary["pooled/war_lo"], logged.summary["pooled/war_hi"]) == (0.51, 0.56)


def test_tables_add_the_paired_comparison_to_the_pooled_run_of_the_cell(fake_wandb, tmp_path):
    import argparse

    import pandas as pd
    from test_tables import CONFIG, make_runs_tree

    from unilearn import layout
    from unilearn.report import tables_cli

    _, runs, manifests = make_runs_tree(tmp_path)
    metrics = layout.metrics_path(runs, "videomae", "dfew", "dfew")
    pooled_id = "0123abcd0123abcd"  # what `unilearn aggregate` kept for the cell's pooled run
    layout.wandb_dir_beside(metrics).mkdir(parents=True)
    (layout.wandb_dir_beside(metrics) / "wandb_id").write_text(pooled_id + "\n")
    out = tmp_path / "t1.csv"
    args = argparse.Namespace(table="table1", config=[CONFIG], runs=runs, manifests=manifests,
                              out=out, overrides=LOGGED, wandb=None)  # fmt: skip
    assert tables_cli.main(args) == 0
    frame = pd.read_csv(out)
    row = frame[
        (frame.method == "VideoMAE") & (frame.dataset == "dfew") & (frame.weights == "last")
    ]
    (logged,) = [r for r in fake_wandb.runs if r.id == pooled_id]
    kw = logged.kwargs
    assert (kw["group"], kw["name"], kw["job_type"]) == (
        "demo/videomae",
        "dfew-pooled",
        "aggregate",
    )
    assert kw["resume"] == "allow"
    assert logged.summary["paired/reference"] == "unilearn"
    assert 100 * logged.summary["paired/diff_uar"] == pytest.approx(row.diff_uar.iloc[0], abs=0.006)
    assert logged.summary["paired/p_war"] == pytest.approx(row.p_war.iloc[0], abs=1e-4)
    assert logged.summary["paired/n_paired"] == row.n_paired.iloc[0]
    # one run per compared cell and weights: VideoMAE on 3 test sets, each reported weights
    assert len(fake_wandb.runs) == 3 * frame.weights.nunique()
