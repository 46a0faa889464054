"""Distributed training: rank and world size from torchrun's or Slurm's environment, and a
2-process gloo run that matches the single-process run (same global batches) within float
tolerance, with per-rank sharding, reduced metrics and rank-0-only writes."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from unilearn.engine.distributed import env_rank, first_host, reduce_mean

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# Deterministic given the global batch: no drop path, mixup, gate noise, per-rank aux loss
# (the load-balancing loss is a non-linear function of each rank's tokens) or expert capacity
# (each rank's experts keep a share of that rank's tokens, as the authors' DDP runs).
EXACT = [
    "wandb.mode=disabled", "finetune.epochs=2", "finetune.warmup_epochs=1", "finetune.blr=0.02",
    "finetune.mixup=0.0", "finetune.cutmix=0.0", "model.drop_path=0.0",
    "model.moae.noisy_gating=false", "model.moae.aux_loss_coef=0.0",
    "model.moae.capacity_factor=null", "runtime.threads=1", "finetune.eval_every=1",
]  # fmt: skip


@pytest.mark.parametrize(
    ("nodelist", "host"),
    [
        ("gpu07", "gpu07"),
        ("gpu[03-05,07]", "gpu03"),
        ("node[1,4],cpu2", "node1"),
        ("a-b[009-010]", "a-b009"),
    ],
)
def test_master_address_from_slurm_nodelist(nodelist, host):
    assert first_host(nodelist) == host


def test_rank_from_slurm_or_torchrun_environment(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SLURM_PROCID", "5")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[12-13]")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert env_rank() == (5, 8, 1)
    import os

    assert os.environ["MASTER_ADDR"] == "gpu12" and os.environ["MASTER_PORT"] == str(15000 + 4242)
    monkeypatch.setenv("RANK", "2")  # torchrun inside a Slurm job wins
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert env_rank() == (2, 4, 0)
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert reduce_mean(
        {"a": 1.0}, __import__("unilearn.engine.distributed").engine.distributed.DistInfo()
    ) == {"a": 1.0}


TESTS = ("ferv39k", "affectnet7")  # tested every epoch; each rank scores a shard of the clips


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, out: str, batch: int) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))  # fmt: skip
    from _engine_data import toy_finetune_data, toy_test_loader

    import unilearn.engine.best_epoch as best_epoch
    import unilearn.engine.finetune as finetune
    from unilearn.config import load_config

    finetune.finetune_data = toy_finetune_data
    best_epoch.test_loader = toy_test_loader
    cfg = load_config(CONFIGS / "demo.yaml", [*EXACT, f"finetune.batch_size={batch}"])
    finetune.run(cfg, "unilearn", "ferv39k", None, None, Path(out), progress=False, tests=TESTS)


@pytest.mark.slow
def test_two_process_gloo_matches_single_process(tmp_path, monkeypatch):
    import numpy as np
    import pandas as pd
    from _engine_data import toy_finetune_data, toy_test_loader

    import unilearn.engine.best_epoch as best_epoch
    import unilearn.engine.finetune as finetune
    from unilearn.config import load_config
    from unilearn.engine.train_state import read_checkpoint

    monkeypatch.setattr(finetune, "finetune_data", toy_finetune_data)
    monkeypatch.setattr(best_epoch, "test_loader", toy_test_loader)
    single = tmp_path / "single"
    cfg = load_config(CONFIGS / "demo.yaml", [*EXACT, "finetune.batch_size=8"])
    finetune.run(cfg, "unilearn", "ferv39k", None, None, single, progress=False, tests=TESTS)

    ddp = tmp_path / "ddp"
    # global batch 2 x 4 = 8: the same batches, each rank holding half of every one
    mp.spawn(_rank_main, args=(2, _free_port(), str(ddp), 4), nprocs=2, join=True)

    a = read_checkpoint(single / "checkpoint.pt")["model"]
    b = read_checkpoint(ddp / "checkpoint.pt")["model"]
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-4, f"largest weight difference {worst}"
    la = [json.loads(x) for x in (single / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (ddp / "log.jsonl").read_text().splitlines()]
    for ea, eb in zip(la, lb, strict=True):  # metrics reduced over ranks
        assert ea["step"] == eb["step"]
        assert eb["loss_dfer"] == pytest.approx(ea["loss_dfer"], rel=1e-4)
        assert eb["loss_sfer"] == pytest.approx(ea["loss_sfer"], rel=1e-4)
        assert (
            eb["test/war"] == pytest.approx(ea["test/war"]) and eb["best/epoch"] == ea["best/epoch"]
        )
    for name in ("pred-ferv39k", "pred-affectnet7.best"):  # the shards gathered, in clip order
        pa, pb = (
            pd.read_parquet(single / f"{name}.parquet"),
            pd.read_parquet(ddp / f"{name}.parquet"),
        )
        assert list(pa.clip_id) == list(pb.clip_id) and len(pa) == 24
        np.testing.assert_allclose(np.stack(pa.scores), np.stack(pb.scores), atol=1e-4)
    # rank 0 alone wrote the run directory
    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in single.iterdir())
    assert not torch.equal(a["head.weight"], torch.zeros_like(a["head.weight"]))
