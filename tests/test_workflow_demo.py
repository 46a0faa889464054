"""`make demo` from a fresh copy of the workflow: table1 whose UniLearn row beats chance; the
sweep targets build Figure 3a/3b from one run per point (slow; CI runs them)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from workflow_run import SMALL, job_counts, overrides_arg, snakemake, workflow_copy

pytestmark = pytest.mark.slow


def test_demo_builds_table1_whose_unilearn_row_beats_chance(tmp_path):
    workdir = workflow_copy(tmp_path)
    snakemake(workdir, "--cores", "2", "results/table1.csv", timeout=3600)
    frame = pd.read_csv(workdir / "results" / "table1.csv")
    chance = frame[frame.method == "chance"].set_index("dataset")
    unilearn = frame[frame.method == "UniLearn"].set_index("dataset")
    assert set(unilearn.index) == {"dfew", "ferv39k", "mafw"}
    for dataset in unilearn.index:
        assert unilearn.uar[dataset] > chance.uar[dataset], dataset
        assert unilearn.war[dataset] > chance.war[dataset], dataset
    markdown = (workdir / "results" / "table1.md").read_text()
    assert "66.80" in markdown  # the paper's DFEW UAR beside ours
    # Nothing left to do: a second invocation plans no job.
    assert job_counts(snakemake(workdir, "-n", "results/table1.csv").output) == {}


def test_sweep_figures_come_from_one_run_per_point(tmp_path):
    import matplotlib.image

    workdir = workflow_copy(tmp_path)
    targets = ["results/figure3a.png", "results/figure3b.png"]
    done = snakemake(workdir, "--cores", "2", *targets, "--config", overrides_arg(SMALL),
                     timeout=1800)  # fmt: skip
    counts = job_counts(done.output)
    assert (
        counts["finetune"] == counts["evaluate"] == 4
    )  # sweeps.n_experts=[2,4], sfer_proportion=[0.5,1.0]
    for target in targets:
        pixels = matplotlib.image.imread(workdir / target)
        assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 50  # a real plot
    for point in ("n_experts=2", "n_experts=4", "sfer_proportion=0.5", "sfer_proportion=1.0"):
        assert (
            workdir / "runs" / "demo" / "metrics" / f"unilearn@{point}" / "ferv39k" / "ferv39k.json"
        ).is_file()
