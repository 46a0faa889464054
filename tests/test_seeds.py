"""Seeds (`seeds: [0, 1]`): every fine-tuning of a table runs once per seed, under a name that
carries the seed only when it is not the config's own (so a one-seed config keeps exactly its runs,
jobs and numbers); different seeds give different weights, the same seed the same data order;
the seeds of a cell share a W&B group; a table cell is the mean ± std over its seeds and the CSV
keeps each seed's row."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from _engine_data import ToyClips, ToyJoint, collate
from test_tables import _fake_metrics, _fake_predictions
from workflow_run import job_counts, overrides_arg, snakemake, workflow_copy

import unilearn.engine.finetune as finetune
from unilearn import layout
from unilearn.catalogue import get_label_set
from unilearn.config import ConfigError, config_hash, load_config
from unilearn.data.loaders import TrainSet
from unilearn.data.samplers import JointBatchSampler
from unilearn.engine.loader import fetch_ahead
from unilearn.engine.wandb_log import group_and_name, run_identity
from unilearn.models.checkpoint import read_checkpoint
from unilearn.plan import Plan
from unilearn.report import runs, seeds, spec, tables

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CONFIG = CONFIGS / "demo.yaml"


def _cfg(*overrides: str):
    return load_config(CONFIG, list(overrides))


# -- names ---------------------------------------------------------------------------------------


def test_a_seed_other_than_the_configs_is_a_suffix_of_the_run_name():
    cfg = _cfg("seeds=[0,1,2]")
    assert [r.name for r in seeds.seed_runs(cfg, "unilearn")] == [
        "unilearn", "unilearn@seed=1", "unilearn@seed=2"
    ]  # fmt: skip
    point = runs.parse_run("unilearn@n_experts=4@seed=2")
    assert (point.experiment, point.sweep, point.value, point.seed) == (
        "unilearn",
        "n_experts",
        "4",
        2,
    )
    assert point.name == "unilearn@n_experts=4@seed=2" and point.point == "unilearn@n_experts=4"
    seeded = runs.parse_run("unilearn@seed=1")
    assert (seeded.sweep, seeded.seed, seeded.point) == (None, 1, "unilearn")
    # the seed becomes the config's `seed` on the engine's command line, after the sweep point
    assert runs.run_overrides(cfg, "unilearn@seed=1") == [("seed", 1)]
    assert runs.run_overrides(cfg, "unilearn@n_experts=4@seed=2") == [
        ("model.moae.n_experts", 4), ("seed", 2)
    ]  # fmt: skip
    assert runs.run_config(cfg, "unilearn@seed=2").seed == 2
    for bad in ("unilearn@seed=01", "unilearn@seed=x", "unilearn@seed=1@n_experts=4"):
        with pytest.raises(ValueError, match="run name"):
            runs.parse_run(bad)


def test_the_configs_own_seed_keeps_the_plain_name_and_the_sweeps_dedup_knows_the_seed():
    cfg = _cfg("seed=3", "seeds=[1,3]")
    assert [r.name for r in seeds.seed_runs(cfg, "videomae")] == ["videomae@seed=1", "videomae"]
    # the sweep point at the config's value is the experiment's own run of the same seed
    names = [r.name for r in runs.sweep_runs(cfg, "n_experts", seed=1)]
    assert names == [
        "unilearn@n_experts=2@seed=1",
        "unilearn@seed=1",
        "unilearn@n_experts=8@seed=1",
    ]
    assert [r.name for r in runs.sweep_runs(cfg, "n_experts", seed=3)] == [
        r.name for r in runs.sweep_runs(cfg, "n_experts")
    ]


def test_seeds_are_distinct_and_a_sweep_of_the_seed_is_refused():
    with pytest.raises(ConfigError, match="seeds.*distinct"):
        _cfg("seeds=[0,0]")
    with pytest.raises(ConfigError, match="seeds"):
        _cfg("sweeps.seed=[0,1]")
    assert seeds.seed_list(_cfg()) == [0] and not seeds.seeded(_cfg("seeds=[5]"))


def test_adding_seeds_changes_no_hash_of_the_runs_already_trained():
    plain, seeded = _cfg(), _cfg("seeds=[0,1]", "seeds_pretrain=true")
    assert config_hash(plain) == config_hash(_cfg("seeds=null", "seeds_pretrain=false"))
    for stage in ("pretrain", "finetune"):
        assert config_hash(plain, stage) == config_hash(seeded, stage)
    assert runs.finetune_hash(seeded, "unilearn", "dfew") == runs.finetune_hash(
        plain, "unilearn", "dfew"
    )
    assert runs.finetune_hash(seeded, "unilearn@seed=1", "dfew") != runs.finetune_hash(
        plain, "unilearn", "dfew"
    )


# -- W&B -----------------------------------------------------------------------------------------


def test_the_seeds_of_a_run_share_its_wandb_group_each_under_its_own_name():
    assert group_and_name("demo", "unilearn", "dfew-fold3") == ("demo/unilearn", "dfew-fold3")
    assert group_and_name("demo", "unilearn@seed=1", "dfew-fold3") == (
        "demo/unilearn", "dfew-fold3@seed=1"
    )  # fmt: skip
    assert group_and_name("demo", "unilearn@n_experts=4@seed=2", "ferv39k-pooled") == (
        "demo/unilearn@n_experts=4", "ferv39k-pooled@seed=2"
    )  # fmt: skip
    identity = run_identity("unilearn@seed=1", "unilearn", "dfew", 3)
    assert identity["seed"] == 1 and identity["run"] == "unilearn@seed=1"
    assert "seed" not in run_identity("unilearn", "unilearn", "dfew", 3)  # the config's own


# -- the plan ------------------------------------------------------------------------------------


def _plan(*overrides: str) -> Plan:
    config = {"configs": [str(CONFIG)], "overrides": list(overrides), "launcher": None,
              "submitit_cluster": "slurm", "runs": "runs", "results": "results"}  # fmt: skip
    return Plan.from_workflow_config(config, python="/env/bin/python")


def test_a_table_reads_every_seeds_metrics_and_figures_the_configs_seed():
    one, two = _plan(), _plan("seeds=[0,1]")
    metrics = [str(m) for m in two.report_inputs("table1")["metrics"]]
    assert len(metrics) == 2 * len(one.report_inputs("table1")["metrics"])
    assert "runs/demo/metrics/unilearn@seed=1/dfew/dfew.best.json" in metrics
    assert "runs/demo/metrics/videomae/mafw/mafw.json" in metrics
    assert two.report_inputs("figure3a") == one.report_inputs("figure3a")
    assert two.run_override_args("unilearn@seed=1") == ["seed=1"]


def test_seeds_fine_tune_from_one_pretraining_unless_seeds_pretrain(tmp_path):
    shared = _plan("seeds=[0,1]").finetune_inputs("unilearn@seed=1", "dfew")
    assert shared["init"] == "runs/demo/pretrain/image+video/checkpoint.pt"
    own = _plan("seeds=[0,1]", "seeds_pretrain=true")
    assert own.finetune_inputs("unilearn@seed=1", "dfew")["init"] == (
        "runs/demo/pretrain/image+video@seed=1/checkpoint.pt"
    )
    assert own.finetune_inputs("unilearn", "dfew")["init"] == (
        "runs/demo/pretrain/image+video/checkpoint.pt"
    )
    weights = tmp_path / "published.pt"
    weights.write_bytes(b"x")
    published = _plan("seeds=[0,1]", "seeds_pretrain=true", f"pretrain.init.image+video={weights}")
    assert published.finetune_inputs("unilearn@seed=1", "dfew")["init"] == str(weights)


# -- the tables ----------------------------------------------------------------------------------


def _seeded_tree(tmp_path: Path, cfg) -> tuple[Path, Path]:
    """Table 1's metrics for each seed: UniLearn's UAR 0.60 + 0.02 x seed."""
    run_root, manifests = tmp_path / "runs", tmp_path / "manifests"
    manifests.mkdir()
    for name in ("dfew", "mafw", "ferv39k"):
        pd.DataFrame({"clip_id": [name]}).to_parquet(manifests / f"{name}.parquet")
    for cell in spec.required_cells("table1", cfg):
        seed = seeds.run_seed(cfg, cell.run)
        k = get_label_set(cell.test).num_classes
        score = 0.5 + 0.1 * cell.run.startswith("unilearn") + 0.02 * seed
        for weights in layout.WEIGHTS:
            path = layout.metrics_path(run_root, cell.run, cell.train, cell.test, weights)
            _fake_metrics(path, cell.test, score, score + 0.05, [10 * (i + 1) for i in range(k)])
            _fake_predictions(run_root, cell, weights, score)
    return run_root, manifests


def test_a_cell_is_the_mean_and_std_over_seeds_and_the_csv_keeps_each_seed(tmp_path):
    cfg = _cfg("seeds=[0,1,2]")
    run_root, manifests = _seeded_tree(tmp_path, cfg)
    out = tmp_path / "table1.csv"
    args = argparse.Namespace(table="table1", config=[CONFIG], runs=run_root, manifests=manifests,
                              out=out, overrides=["seeds=[0,1,2]"])  # fmt: skip
    assert tables.main(args) == 0
    frame = pd.read_csv(out, dtype={"seed": str})
    cell = frame[
        (frame.method == "UniLearn") & (frame.dataset == "dfew") & (frame.weights == "last")
    ]
    assert list(cell.seed) == ["0", "1", "2", "mean"]
    assert list(cell.run) == ["unilearn", "unilearn@seed=1", "unilearn@seed=2", "unilearn"]
    assert list(cell.uar) == [60.0, 62.0, 64.0, 62.0]
    mean = cell.iloc[-1]
    assert mean.uar_std == pytest.approx(2.0) and mean.war_std == pytest.approx(2.0)
    assert mean.gap_uar == pytest.approx(62.0 - 66.80) and mean.n_seeds == 3
    assert mean.seeds == "0 1 2"
    assert pd.isna(cell.iloc[0].uar_std)  # a seed's own row has no spread
    chance = frame[frame.method == "chance"]  # the same test set whatever the seed: once
    assert (
        len(chance) == frame.weights.nunique() * 3
        and (chance.seed.isna() | (chance.seed == "")).all()
    )
    md = out.with_suffix(".md").read_text()
    assert "| UniLearn | 62.00 ± 2.00 (66.80, -4.80) |" in md
    assert "Seeds 0, 1, 2: each cell is the mean ± std" in md
    assert "60.00" not in md.split("**Best epoch")[0]  # the seeds' own rows stay in the CSV
    # paired comparisons pair the seeds: VideoMAE's seed s against UniLearn's seed s
    video = frame[
        (frame.method == "VideoMAE") & (frame.dataset == "dfew") & (frame.weights == "last")
    ]
    assert list(video.seed) == ["0", "1", "2", "mean"] and video.iloc[:3].p_uar.notna().all()
    mean = video.iloc[-1]  # the mean difference, with an interval over clips and seeds
    assert mean.diff_uar == pytest.approx(video.iloc[:3].diff_uar.mean(), abs=0.01)
    assert mean.diff_uar_lo <= mean.diff_uar <= mean.diff_uar_hi and 0 < mean.p_uar <= 1
    assert mean.n_paired == video.iloc[0].n_paired
    assert "| VideoMAE, seed 1 | UniLearn |" in md
    assert "| VideoMAE, mean of 3 seeds | UniLearn |" in md


def test_one_seed_gives_todays_table():
    cfg = _cfg("seeds=[0]")
    frame = pd.DataFrame({"run": ["unilearn"], "uar": [60.0]})
    assert seeds.summarise(frame, cfg) is frame
    assert seeds.markdown_note(cfg) == [] and seeds.markdown_frame(frame) is frame


# -- the engine ----------------------------------------------------------------------------------

# 1 epoch of a few steps on toy clips, with the real joint batch sampler
TINY = ["finetune.selection.validation=null", "wandb.mode=disabled", "finetune.epochs=1", "finetune.batch_size=8",
        "finetune.warmup_epochs=0", "finetune.blr=0.05"]  # fmt: skip


def _toy_data(cfg, resolved, fold, store, info, holdout=None) -> TrainSet:
    m = cfg.model
    sources = {task: ToyClips(40, len(resolved.labels[task]),
                              m.num_frames if task == "dfer" else m.tubelet_size, m.input_size,
                              seed=len(task))
               for task in resolved.tasks}  # fmt: skip
    ft = cfg.finetune
    sampler = JointBatchSampler(len(sources["dfer"]), len(sources["sfer"]), ft.batch_size,
                                ft.sfer_proportion, seed=cfg.seed, rank=0, world_size=1,
                                sfer_batch_factor=ft.sfer_batch_factor)  # fmt: skip
    return TrainSet(ToyJoint(sources), sampler, collate, 0, False, fetch_ahead())


def _fine_tune(monkeypatch, cfg, out: Path) -> tuple[list, dict[str, torch.Tensor]]:
    """The (task, rows) of every batch, in order, and the final weights."""
    order, real = [], finetune.train_step

    def step(model, batch, *args, **kwargs):
        order.append((batch["task"], batch["row"].tolist()))
        return real(model, batch, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(finetune, "finetune_data", _toy_data)
        m.setattr(finetune, "train_step", step)
        finetune.run(cfg, "unilearn", "dfew", 1, None, out, progress=False)
    return order, read_checkpoint(out / "checkpoint.pt")["model"]


def test_seeds_give_different_weights_and_the_same_seed_the_same_data_order(tmp_path, monkeypatch):
    cfg = _cfg("seeds=[0,1]", *TINY)
    order0, weights0 = _fine_tune(monkeypatch, runs.run_config(cfg, "unilearn"), tmp_path / "a")
    again, weights_again = _fine_tune(monkeypatch, runs.run_config(cfg, "unilearn"), tmp_path / "b")
    order1, weights1 = _fine_tune(
        monkeypatch, runs.run_config(cfg, "unilearn@seed=1"), tmp_path / "c"
    )
    assert order0 == again and len(order0) > 2
    assert all(torch.equal(weights0[k], weights_again[k]) for k in weights0)
    assert order1 != order0  # another seed: another order of the same DFER clips
    dfer = [sorted(r for task, rows in o if task == "dfer" for r in rows) for o in (order0, order1)]
    assert dfer[0] == dfer[1] == list(range(40))
    heads = [k for k in weights0 if k.startswith("head")]
    assert heads and all(not torch.equal(weights0[k], weights1[k]) for k in heads)
    assert not all(torch.equal(weights0[k], weights1[k]) for k in weights0)


# -- the workflow --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return workflow_copy(tmp_path_factory.mktemp("workflow"))


def _outputs(stdout: str) -> set[str]:
    return {o for line in re.findall(r"^\s*output: (.*)$", stdout, re.M) for o in line.split(", ")}


def test_two_seeds_double_table1s_fine_tunings_and_one_seed_changes_no_job(workdir):
    today = snakemake(workdir, "-n", "results/table1.csv")
    one = snakemake(workdir, "-n", "results/table1.csv", "--config", overrides_arg(["seeds=[0]"]))
    assert job_counts(one.stdout) == job_counts(today.stdout)
    assert _outputs(one.stdout) == _outputs(today.stdout)
    two = snakemake(workdir, "-n", "results/table1.csv", "--config",
                    overrides_arg(["seeds=[0,1]"]))  # fmt: skip
    counts, before = job_counts(two.stdout), job_counts(today.stdout)
    fine_tunings = ("finetune", "finetune_joint")
    assert sum(counts[r] for r in fine_tunings) == 2 * sum(before[r] for r in fine_tunings) == 44
    assert counts["aggregate"] == 2 * before["aggregate"] and counts["pretrain"] == 2
    assert "runs/demo/finetune/unilearn@seed=1/dfew-fold5/checkpoint.pt" in two.stdout
    assert _outputs(today.stdout) < _outputs(two.stdout)  # seed 0's runs are today's
    own = snakemake(workdir, "-n", "results/table1.csv", "--config",
                    overrides_arg(["seeds=[0,1]", "seeds_pretrain=true"]))  # fmt: skip
    assert job_counts(own.stdout)["pretrain_seed"] == 2
    assert "runs/demo/pretrain/image+video@seed=1/checkpoint.pt" in own.stdout


def test_status_lists_every_seeds_runs_and_seeded_pretrainings(tmp_path):
    from unilearn.status import collect, expected_hash

    cfg = _cfg("seeds=[0,1]", "seeds_pretrain=true")
    rows = collect(cfg, tmp_path, ["table1"])
    pretrain = [r.run for r in rows if r.stage == "pretrain"]
    assert sorted(pretrain) == ["image+video", "image+video@seed=1", "video", "video@seed=1"]
    finetunes = {r.run for r in rows if r.stage == "finetune"}
    assert finetunes == {"unilearn", "unilearn@seed=1", "videomae", "videomae@seed=1"}
    assert (
        expected_hash(cfg, "pretrain", "video@seed=1", "-")
        == config_hash(cfg.with_overrides([("seed", 1)]), "pretrain")
        != expected_hash(cfg, "pretrain", "video", "-")
    )
