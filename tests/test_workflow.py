"""The Snakemake workflow's plan (dry runs, seconds each): the jobs each target needs, config errors
at parse time, sweeps expanded into one job per point, GPU stages through submitit under the
Slurm profile, the doctor in front of real data."""

from __future__ import annotations

import re

import pytest
from workflow_run import job_counts, snakemake, workflow_copy

from unilearn.config import load_config


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return workflow_copy(tmp_path_factory.mktemp("workflow"))


def test_dry_run_lists_every_job_of_table1(workdir):
    done = snakemake(workdir, "-n", "results/table1.csv")
    counts = job_counts(done.stdout)
    # UniLearn and VideoMAE on DFEW (5 folds), MAFW (5 folds) and FERV39K: 2 x 11 fine-tunings,
    # each testing its model itself (UniLearn on FERV39K, a joint single-split run: finetune_joint)
    assert counts == {
        "synth": 1, "doctor": 5, "manifest": 5, "preprocess": 5, "pretrain": 2, "finetune": 21,
        "finetune_joint": 1, "aggregate": 6, "table": 1, "total": 47,
    }  # fmt: skip
    # the doctor checks the synthetic trees too (they pass), each before its manifest
    assert "data/doctor/dfew.md" in done.stdout
    assert "runs/demo/finetune/unilearn/dfew-fold5/checkpoint.pt" in done.stdout
    assert "runs/demo/metrics/videomae/mafw/mafw.json" in done.stdout


def test_fine_tuning_jobs_write_every_prediction_file_the_targets_read(workdir):
    done = snakemake(workdir, "-n", "all")
    assert "evaluate" not in job_counts(done.stdout)
    plan = done.stdout.split("rule ")
    joint = next(r for r in plan if "wildcards: run=unilearn, train=ferv39k" in r)
    for test in ("ferv39k", "affectnet7"):
        for name in (f"pred-{test}.parquet", f"pred-{test}.best.parquet",
                     f"pred-{test}.expert_usage.json", f"pred-{test}.best.centres.parquet"):  # fmt: skip
            assert f"runs/demo/finetune/unilearn/ferv39k/{name}" in joint.split("log:")[0]
    fold = next(r for r in plan if "wildcards: run=videomae, train=dfew, fold=-fold3" in r)
    assert "videomae/dfew-fold3/pred-dfew.best.metrics.json" in fold.split("log:")[0]
    assert "pred-affectnet7" not in fold
    assert "runs/demo/metrics/unilearn/ferv39k/affectnet7.best.json" in done.stdout


def test_misspelt_config_key_fails_before_any_job(workdir):
    done = snakemake(workdir, "-n", "results/table1.csv", "--config",
                     "overrides=[finetune.epochz=2]", check=False)  # fmt: skip
    assert done.returncode != 0
    assert "finetune.epochz: unknown key" in done.output and "did you mean 'epochs'" in done.output


def test_unknown_workflow_key_fails(workdir):
    done = snakemake(workdir, "-n", "--config", "lancher=submitit", check=False)
    assert done.returncode != 0 and "lancher" in done.output


def test_sweep_figures_expand_one_fine_tuning_per_point(workdir):
    cfg = load_config(workdir / "configs" / "demo.yaml")
    for figure, sweep in (("figure3a", "n_experts"), ("figure3b", "sfer_proportion")):
        done = snakemake(workdir, "-n", f"results/{figure}.png")
        counts = job_counts(done.stdout)
        points = cfg.sweeps[sweep]
        assert counts["finetune_joint"] == counts["aggregate"] == len(points)
        for value in points:
            assert (
                f"runs/demo/finetune/unilearn@{sweep}={value}/ferv39k/checkpoint.pt" in done.stdout
            )


def test_slurm_profile_sends_only_gpu_stages_through_submitit(workdir):
    done = snakemake(workdir, "-n", "--profile", "slurm", "results/table1.csv")
    commands = [line for line in done.stdout.splitlines() if "-m unilearn" in line]
    submitted = {
        re.search(r"-m unilearn\.launch (\w+)", c)[1] for c in commands if "unilearn.launch" in c
    }
    here = {re.search(r"-m unilearn (\w+)", c)[1] for c in commands if "-m unilearn " in c}
    # GPU stages go through the thin submitter (the stage itself is not imported while waiting).
    assert submitted == {"pretrain", "finetune"}
    assert here == {"synth", "doctor", "manifest", "preprocess", "aggregate", "tables"}
    assert all("--submitit-cluster slurm --" in c for c in commands if "unilearn.launch" in c)


def test_real_data_goes_through_the_doctor_first(workdir):
    configs = "configs=[configs/paper.yaml,configs/local.example.yaml]"
    done = snakemake(workdir, "-n", "-p", "results/table1.csv", "--config", configs)
    counts = job_counts(done.stdout)
    assert counts["doctor"] == 5 and "synth" not in counts
    assert "unilearn doctor dfew --root /datasets/DFEW" in done.stdout


def test_real_data_without_roots_names_the_missing_key(workdir):
    done = snakemake(workdir, "-n", "results/table1.csv", "--config", "configs=configs/paper.yaml",
                     check=False)  # fmt: skip
    assert done.returncode != 0
    assert re.search(r"data\.roots\.\w+: not set, but a requested target needs", done.output)
