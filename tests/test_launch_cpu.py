"""The CPU stages (doctor, manifest, preprocess) through the launcher, as the workflow starts them
under `launcher: submitit`: the same job mechanics as the GPU stages (here submitit's local
backend; on the test Slurm cluster in tests/test_workflow_slurm.py)."""

from __future__ import annotations


def test_a_cpu_stage_runs_as_a_submitit_job_with_its_jobs_cpus(tmp_path):
    # `python -m unilearn.launch preprocess ... -- ARGS`, as the workflow starts it under
    # `launcher: submitit`; the local backend runs the same job mechanics without Slurm.
    import pandas as pd
    from _media import manifest_frame, manifest_row, moving_pattern, write_frames

    from unilearn.launch.__main__ import main

    clip = write_frames(tmp_path / "src" / "00001", moving_pattern(4, 40))
    manifest_frame([manifest_row("dfew", "00001", clip, "frames", 0, 4, "train", 1)]).to_parquet(
        tmp_path / "dfew.parquet"
    )
    argv = ["preprocess", "--config", "configs/demo.yaml", "--submitit-cluster", "local",
            "--slurm-folder", str(tmp_path / "jobs"), "--slurm-quiet", "--",
            "--manifest", str(tmp_path / "dfew.parquet"), "--out", str(tmp_path / "store"),
            "--short-side", "32", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    table = pd.read_parquet(tmp_path / "store" / "dfew.parquet")
    assert table["n_frames"].tolist() == [4]
    log = next((tmp_path / "jobs").rglob("*_log.err")).read_text()
    assert "unilearn preprocess --launcher local" in log  # the job ran the stage itself
