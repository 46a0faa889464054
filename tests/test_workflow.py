"""The Snakemake workflow's plan (dry runs, seconds each): the jobs each target needs, config errors
at parse time, sweeps expanded into one job per point, GPU stages through submitit under the
Slurm profile, the doctor in front of real data."""

from __future__ import annotations

import re

import pytest
from workflow_run import job_counts, overrides_arg, snakemake, workflow_copy

from unilearn.config import load_config
from unilearn.report import runs


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
    # the demo holds out a validation split: the same job writes the val picks, aggregate pools them
    assert (
        "runs/demo/finetune/unilearn/ferv39k/pred-affectnet7.val.parquet" in joint.split("log:")[0]
    )
    assert "runs/demo/metrics/unilearn/ferv39k/affectnet7.val.json" in done.stdout


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
        for run in runs.sweep_runs(cfg, sweep):
            assert f"runs/demo/finetune/{run.name}/ferv39k/checkpoint.pt" in done.stdout
        # the point at the config's own value is the run `unilearn`, not a second job
        assert "runs/demo/finetune/unilearn/ferv39k/checkpoint.pt" in done.stdout
        assert f"unilearn@{sweep}={runs.value_slug(points[1])}/" not in done.stdout


def test_slurm_profile_sends_gpu_and_cpu_stages_through_submitit(workdir):
    done = snakemake(workdir, "-n", "--profile", "slurm", "results/table1.csv")
    commands = [line for line in done.stdout.splitlines() if "-m unilearn" in line]
    submitted = {
        re.search(r"-m unilearn\.launch (\w+)", c)[1] for c in commands if "unilearn.launch" in c
    }
    here = {re.search(r"-m unilearn (\w+)", c)[1] for c in commands if "-m unilearn " in c}
    # GPU and CPU stages go through the thin submitter (the stage is not imported while waiting);
    # only the light rules run on the login node.
    assert submitted == {"pretrain", "finetune", "doctor", "manifest", "preprocess"}
    assert here == {"synth", "aggregate", "tables"}
    # a submitted CPU stage uses the CPUs of its job, not a worker count from the login node
    assert not any("--workers" in c for c in commands if "unilearn.launch" in c)
    assert all("--submitit-cluster slurm " in c for c in commands if "unilearn.launch" in c)


def test_real_data_goes_through_the_doctor_first(workdir):
    configs = "configs=[configs/paper.yaml,configs/local.example.yaml]"
    done = snakemake(workdir, "-n", "-p", "results/table1.csv", "--config", configs)
    counts = job_counts(done.stdout)
    assert counts["doctor"] == 5 and "synth" not in counts
    # the paper config's launcher is submitit: the doctor is a Slurm CPU job
    assert re.search(r"-m unilearn\.launch doctor .* -- +dfew --root /datasets/DFEW", done.stdout)


def test_real_data_without_roots_names_the_missing_key(workdir):
    done = snakemake(workdir, "-n", "results/table1.csv", "--config", "configs=configs/paper.yaml",
                     check=False)  # fmt: skip
    assert done.returncode != 0
    assert re.search(r"data\.roots\.\w+: not set, but a requested target needs", done.output)


def test_published_weights_replace_a_modes_pretraining(workdir, tmp_path):
    weights = tmp_path / "vit_base_voxceleb2+affectnet_100.pt"
    weights.write_bytes(b"stand-in for the published file")
    done = snakemake(workdir, "-n", "results/table1.csv", "--config",
                     f"overrides=[pretrain.init.image+video={weights}]")  # fmt: skip
    counts = job_counts(done.stdout)
    assert counts["pretrain"] == 1  # only the VideoMAE baseline's video pre-training runs
    assert str(weights) in done.stdout  # UniLearn's fine-tunings start from the file
    missing = snakemake(workdir, "-n", "results/table1.csv", "--config",
                        f"overrides=[pretrain.init.image+video={tmp_path / 'nope.pt'}]",
                        check=False)  # fmt: skip
    assert missing.returncode != 0
    assert "pretrain.init.image+video" in missing.output and "nope.pt" in missing.output


def test_preprocess_shards_from_the_config_become_parts_and_one_merge(workdir):
    shards = overrides_arg(["data.preprocess_shards={voxceleb2: 4, default: 1}"])
    done = snakemake(workdir, "-n", "-p", "--profile", "slurm", "results/table1.csv",
                     "--config", shards)  # fmt: skip
    counts = job_counts(done.stdout)
    assert counts["preprocess_shard"] == 4 and counts["preprocess"] == 5
    parts = [c for c in done.stdout.splitlines() if "--shard " in c]
    assert sorted(re.search(r"--shard (\d/\d)", c)[1] for c in parts) == [
        "1/4",
        "2/4",
        "3/4",
        "4/4",
    ]
    assert all("unilearn.launch preprocess" in c for c in parts)  # each part its own Slurm job
    merge = [c for c in done.stdout.splitlines() if "--merge 4" in c]
    assert len(merge) == 1 and "unilearn.launch" not in merge[0]  # light: on the login node
    demo = snakemake(workdir, "-n", "-p", "results/table1.csv")  # the demo: one run per dataset
    assert "preprocess_shard" not in job_counts(demo.stdout)
    # run here, a CPU stage starts as many workers as Snakemake budgets it threads (the doctor 1)
    doctors = [c for c in demo.stdout.splitlines() if "-m unilearn doctor" in c]
    assert doctors and all("--workers 1 " in c for c in doctors)


def test_training_jobs_leave_a_stale_last_pt_to_the_engine(workdir):
    # a job re-run because its config changed starts afresh, one re-run after a crash resumes:
    # the engine decides (`unilearn.launch.restart`), the rule only passes the flag
    done = snakemake(workdir, "-n", "-p", "results/table1.csv")
    commands = [
        c for c in done.stdout.splitlines() if re.search(r"-m unilearn (pretrain|finetune) ", c)
    ]
    assert len(commands) == job_counts(done.stdout)["pretrain"] + 22
    assert all("--restart-if-config-changed" in c and "last.pt" not in c for c in commands)
