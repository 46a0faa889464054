"""Distributed training: rank and world size from torchrun's or Slurm's environment (also for 2
nodes x 4 tasks, through the job's own export), samplers sharded at world size 32 covering
every sample once per epoch, and a 2-process gloo run that matches the single-process run (same
global batches, same lr) within float tolerance, with reduced metrics and rank-0-only writes.

A 4-rank run over 2 Slurm nodes (two slurmd on this host, `srun -N2 --ntasks-per-node=2`)
matches the single-process run. Not covered: NCCL, and MASTER_ADDR from the node list in that
run (the test nodes' names do not resolve, so the run is given 127.0.0.1; the derivation itself
is tested above)."""

from __future__ import annotations

import json
import socket
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from unilearn.data.samplers import JointBatchSampler, PretrainBatchSampler
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
_DIST_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _slurm_task(monkeypatch, procid: int, nodes: int = 2, tasks_per_node: int = 4) -> None:
    """The variables srun gives task `procid` of a `nodes` x `tasks_per_node` job."""
    for var in _DIST_VARS:
        # setenv first records the variable's state before the test, so teardown restores it
        # (the job's exporter below writes os.environ directly)
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", str(nodes))
    monkeypatch.setenv("SLURM_NTASKS", str(nodes * tasks_per_node))
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[07-08]")
    monkeypatch.setenv("SLURM_NODEID", str(procid // tasks_per_node))
    monkeypatch.setenv("SLURM_PROCID", str(procid))
    monkeypatch.setenv("SLURM_LOCALID", str(procid % tasks_per_node))


def test_two_nodes_of_four_tasks_get_ranks_and_one_master(monkeypatch):
    import os

    from unilearn.launch.job import _export_distributed_env

    seen = []
    for procid in range(8):
        _slurm_task(monkeypatch, procid)
        assert env_rank() == (procid, 8, procid % 4)  # straight from SLURM_*
        direct = (os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"])
        _slurm_task(monkeypatch, procid)
        _export_distributed_env()  # what the Slurm job runs before the stage (submitit)
        assert env_rank() == (procid, 8, procid % 4)
        assert os.environ["LOCAL_WORLD_SIZE"] == "4"
        seen.append((direct, os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"]))
    assert {d for d, _, _ in seen} == {("gpu07", str(15000 + 4242))}  # every rank, one master
    assert len({(a, p) for _, a, p in seen}) == 1 and seen[0][1] == "gpu07"


@pytest.mark.parametrize("sampler", ["joint", "pretrain"])
def test_world_32_shards_cover_every_sample_once_per_epoch(sampler):
    world, batch = 32, 4  # 8 nodes x 4 GPUs, or 4 x 8
    sizes = (world * batch * 3, world * batch * 5)  # whole global batches: no padding

    def make(rank):
        if sampler == "joint":
            return JointBatchSampler(sizes[0], sizes[1], batch, sfer_proportion=1.0, seed=3,
                                     rank=rank, world_size=world, sfer_batch_factor=1)  # fmt: skip
        return PretrainBatchSampler(sizes[0], sizes[1], batch, 1.0, seed=3, rank=rank,
                                    world_size=world, repeated_views=1, video_repeat=1.0)  # fmt: skip

    for epoch in (0, 1):
        per_rank = []
        for rank in range(world):
            s = make(rank)
            s.set_epoch(epoch)
            per_rank.append(list(s))
        assert len({len(b) for b in per_rank}) == 1 and len(per_rank[0]) == 8  # same step count
        for step in range(len(per_rank[0])):  # one source per global batch, on every rank
            assert len({per_rank[r][step][0][0] for r in range(world)}) == 1
        drawn = [(src, i) for batches in per_rank for b in batches for src, i, _ in b]
        assert len(drawn) == len(set(drawn)) == sum(sizes)
    # a source that does not fill its last global batch is padded by wrapping, as
    # DistributedSampler pads: 1000 clips in 8 global batches of 128 = 24 clips twice
    drawn = []
    for rank in range(world):
        s = JointBatchSampler(1000, 10, batch, sfer_proportion=1.0, seed=0, rank=rank,
                              world_size=world, sfer_batch_factor=1)  # fmt: skip
        drawn += [i for b in s for src, i, _ in b if src == "dfer"]
    assert sorted(Counter(Counter(drawn).values()).items()) == [(1, 976), (2, 24)]
    assert set(drawn) == set(range(1000))


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
    from unilearn.models.checkpoint import read_checkpoint

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
        assert eb["lr"] == ea["lr"]  # lr scaled by the global batch (per-rank batch x ranks)
        assert eb["loss_dfer"] == pytest.approx(ea["loss_dfer"], rel=1e-4)
        assert eb["loss_sfer"] == pytest.approx(ea["loss_sfer"], rel=1e-4)
        # the deterministic validation-split test agrees; the authors' pass draws the router's
        # noise per rank's batch, so its WAR (and pick) may differ from one process's, as theirs
        assert (
            eb["val/war"] == pytest.approx(ea["val/war"])
            and eb["best_val/epoch"] == ea["best_val/epoch"]
        )
        assert "select/war" in ea and "select/war" in eb
    for name in ("pred-ferv39k", "pred-affectnet7.val"):  # the shards gathered, in clip order
        pa, pb = (
            pd.read_parquet(single / f"{name}.parquet"),
            pd.read_parquet(ddp / f"{name}.parquet"),
        )
        assert list(pa.clip_id) == list(pb.clip_id) and len(pa) == 24
        np.testing.assert_allclose(np.stack(pa.scores), np.stack(pb.scores), atol=1e-4)
    # rank 0 alone wrote the run directory
    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in single.iterdir())
    assert not torch.equal(a["head.weight"], torch.zeros_like(a["head.weight"]))


_SLURM_RANK = """
import os, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from _engine_data import toy_finetune_data
import unilearn.engine.finetune as finetune
from unilearn.config import load_config
from unilearn.engine.distributed import env_rank
print("task", os.environ["SLURMD_NODENAME"], *env_rank(), flush=True)
finetune.finetune_data = toy_finetune_data
cfg = load_config({config!r}, {overrides!r})
finetune.run(cfg, "unilearn", "ferv39k", None, None, Path({out!r}), progress=False)
"""


@pytest.mark.slurm
@pytest.mark.slow
def test_two_slurm_nodes_of_two_tasks_train_like_one_process(tmp_path, monkeypatch):
    import os
    import shutil
    import subprocess
    import sys

    import slurm_cluster as cluster_lib
    from _engine_data import toy_finetune_data

    import unilearn.engine.finetune as finetune
    from unilearn.config import load_config
    from unilearn.models.checkpoint import read_checkpoint

    reason = cluster_lib.unavailable_reason()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the Slurm tests: {reason}")
        pytest.skip(reason)
    monkeypatch.setattr(finetune, "finetune_data", toy_finetune_data)
    single = tmp_path / "single"
    cfg = load_config(CONFIGS / "demo.yaml", [*EXACT, "finetune.batch_size=8"])
    finetune.run(cfg, "unilearn", "ferv39k", None, None, single, progress=False)

    out = tmp_path / "two-nodes"
    code = _SLURM_RANK.format(tests=str(Path(__file__).parent), config=str(CONFIGS / "demo.yaml"),
                              overrides=[*EXACT, "finetune.batch_size=2"], out=str(out))  # fmt: skip
    # its own directory under /tmp: pytest's tmp_path is not traversable by the munge user
    cluster = cluster_lib.SlurmCluster(cpus=2, nodes=2)
    try:
        cluster.start()
        env = {k: v for k, v in cluster.env.items() if k not in _DIST_VARS}
        env.update(PYTHONPATH=os.pathsep.join(sys.path), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(_free_port()))  # fmt: skip
        done = subprocess.run(
            ["srun", "-N2", "--ntasks-per-node=2", "--cpus-per-task=1", "--kill-on-bad-exit=1",
             "--chdir", str(tmp_path), sys.executable, "-c", code],
            env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)
    assert done.returncode == 0, done.stdout + done.stderr
    tasks = sorted(line.split()[1:] for line in done.stdout.splitlines() if line.startswith("task"))
    # ranks 0-1 on node1, 2-3 on node2; world 4; local rank = position on the node
    assert tasks == [["node1", "0", "4", "0"], ["node1", "1", "4", "1"],
                     ["node2", "2", "4", "0"], ["node2", "3", "4", "1"]]  # fmt: skip
    a = read_checkpoint(single / "checkpoint.pt")["model"]
    b = read_checkpoint(out / "checkpoint.pt")["model"]
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-4, f"largest weight difference {worst}"
    la = [json.loads(x) for x in (single / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [e["lr"] for e in la] == [e["lr"] for e in lb]  # lr of the global batch 4 x 2
