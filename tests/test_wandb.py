"""W&B runs are offline by default, named from the config, hold the logged summary metrics in
the offline run directory, and never record the API key."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from unilearn.config import config_hash, load_config
from unilearn.engine.wandb_log import read_offline_run, run_for

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SECRET = "0123456789abcdef-not-a-real-key-0123456789"


def test_wandb_offline_run_holds_summary_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the config's `offline` must suffice
    cfg = load_config(CONFIGS / "demo.yaml")
    run = run_for(
        cfg,
        job_type="finetune",
        group="demo/unilearn",
        name="dfew-3",
        run_dir=tmp_path,
        is_main=True,
    )
    run.log({"train/loss": 1.25, "lr": 1e-3}, step=7)
    run.summary({"test/uar": 0.625, "test/war": 0.75})
    run_dir = run.dir
    run.finish()

    assert run_dir.name.startswith("offline-run-")
    logged = read_offline_run(run_dir)
    assert (logged["group"], logged["job_type"], logged["name"]) == (
        "demo/unilearn",
        "finetune",
        "dfew-3",
    )
    assert logged["summary"]["test/uar"] == 0.625 and logged["summary"]["test/war"] == 0.75
    assert logged["summary"]["train/loss"] == 1.25
    assert logged["config"]["config_hash"] == config_hash(cfg)
    assert logged["config"]["model"]["moae"]["n_experts"] == cfg.model.moae.n_experts
    assert logged["complete"]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path

    # W&B's service may still be writing when finish() returns: the reader waits for the exit
    # record, and a log cut mid-record reads as incomplete instead of failing
    full = next(run_dir.glob("*.wandb")).read_bytes()
    late = tmp_path / "late"
    late.mkdir()
    (late / "run.wandb").write_bytes(full[:7])
    writer = threading.Timer(0.3, (late / "run.wandb").write_bytes, args=(full,))
    writer.start()
    try:
        assert read_offline_run(late, wait=20)["group"] == "demo/unilearn"
    finally:
        writer.join()
    (late / "run.wandb").write_bytes(full[: len(full) - 5])
    assert not read_offline_run(late, wait=0.2)["complete"]


def test_wandb_only_rank0_and_disabled_do_nothing(tmp_path):
    cfg = load_config(CONFIGS / "demo.yaml")
    for kwargs in ({"is_main": False}, {"is_main": True, "mode": "disabled"}):
        run = run_for(cfg, job_type="evaluate", group="g", name="n", run_dir=tmp_path, **kwargs)
        run.log({"x": 1}, step=0)
        run.summary({"y": 2})
        run.finish()
        assert run.dir is None
    assert not any(tmp_path.iterdir())


def test_resumed_run_continues_the_same_wandb_run(tmp_path):
    cfg = load_config(CONFIGS / "demo.yaml")
    ids = []
    for _ in range(2):
        run = run_for(cfg, job_type="pretrain", group="g", name="n", run_dir=tmp_path, is_main=True)
        ids.append(run.run.id)
        run.finish()
    assert ids[0] == ids[1]


@pytest.mark.parametrize("mode", ["offline"])
def test_wandb_mode_flag_wins_over_config(tmp_path, mode):
    cfg = load_config(CONFIGS / "demo.yaml", ["wandb.mode=disabled"])
    run = run_for(
        cfg, job_type="finetune", group="g", name="n", run_dir=tmp_path, is_main=True, mode=mode
    )
    assert run.dir is not None and run.dir.name.startswith("offline-run-")
    run.finish()
