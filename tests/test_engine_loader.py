"""The engines' run-long loader: the batches of a resumed run are exactly the rest of the
uninterrupted run's, across epoch boundaries, from the step position alone (toy and real store,
any number of workers); the workers start once per run, not per epoch; the prefetch thread keeps
order, surfaces errors where they happened and stops when closed."""

from __future__ import annotations

import itertools
import os
import threading

import pytest
import torch
from _stores import build_tiny_store, finetune_loader
from torch.utils.data import Dataset

from unilearn.data.loaders import RunBatches, TrainSet, build_finetune_loader
from unilearn.data.samplers import JointBatchSampler
from unilearn.engine.loader import fetch_ahead
from unilearn.engine.prefetch import Prefetcher


class EpochSampler:
    """Epoch e: batches [[100e + 2i, 100e + 2i + 1] for i in range(5)], a pure function of e."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return 5

    def __iter__(self):
        for i in range(5):
            yield [100 * self.epoch + 2 * i, 100 * self.epoch + 2 * i + 1]


class WhoLoads(Dataset):
    def __getitem__(self, item):
        return item, os.getpid()


def _collate(items):
    return {"items": [i for i, _ in items], "pids": {p for _, p in items}}


def test_run_batches_resume_mid_epoch_across_epoch_boundaries():
    full = list(RunBatches(EpochSampler(), 0, 13))
    assert len(full) == 13
    assert full[5] == [100, 101] and full[12] == [204, 205]  # epoch 1 starts at step 5
    for start in (1, 5, 7, 12):
        rest = list(RunBatches(EpochSampler(), start, 13))
        assert rest == full[start:], f"resumed at {start}"
        assert len(RunBatches(EpochSampler(), start, 13)) == 13 - start


def test_a_sampler_resumes_from_the_step_position_alone():
    def sampler():
        return JointBatchSampler(dfer_size=37, sfer_size=90, batch_size=4, sfer_proportion=0.5,
                                 seed=3, rank=1, world_size=2, sfer_batch_factor=1)  # fmt: skip

    n = len(sampler())
    full = list(RunBatches(sampler(), 0, 6 * n))
    for start in (4 * n + 5, 5 * n, 5 * n + 1):
        assert list(RunBatches(sampler(), start, 6 * n)) == full[start:], f"resumed at {start}"


AUTHORS_RECIPE = {"sfer_sampling": "balanced", "sfer_batch_factor": 2, "random_erasing": 0.5,
                  "sfer_augment": "resize_crop", "sfer_resize": 1.2}  # fmt: skip


@pytest.mark.parametrize("recipe", [{}, AUTHORS_RECIPE], ids=["default", "authors"])
def test_a_resumed_run_loads_the_rest_of_the_uninterrupted_runs_clips(tmp_path, recipe):
    store = build_tiny_store(tmp_path)
    train = finetune_loader(store, "dfew", "affectnet7", fold=1, num_workers=2, seed=5,
                            num_frames=8, input_size=32, batch_size=4, **recipe)  # fmt: skip
    n = len(train)
    reference = list(train.run(2 * n - 2, 3 * n, seed=5))  # from the end of epoch 1
    resumed = list(train.run(2 * n + 1, 3 * n, seed=5))  # killed after step 2n + 1
    assert len(resumed) == len(reference) - 3 > 0
    for got, want in zip(resumed, reference[3:]):
        assert got["task"] == want["task"] and torch.equal(got["x"], want["x"])


def test_the_loader_workers_start_once_per_run():
    data = TrainSet(WhoLoads(), EpochSampler(), _collate, 1, False, fetch_ahead())
    batches = list(data.run(3, 15, seed=0))
    assert [b["items"] for b in batches] == list(RunBatches(EpochSampler(), 3, 15))
    pids = set().union(*(b["pids"] for b in batches))
    assert len(pids) == 1 and os.getpid() not in pids  # one worker process served 3 epochs


def test_the_loader_never_draws_from_the_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    list(TrainSet(WhoLoads(), EpochSampler(), _collate, 0, False, fetch_ahead()).run(0, 7, seed=1))
    assert torch.equal(torch.rand(3), expected)


def test_prefetcher_keeps_order_and_raises_where_the_iterable_failed():
    def items():
        yield from range(5)
        raise OSError("disk gone")

    for depth in (0, 1, 3):
        got = []
        with pytest.raises(OSError, match="disk gone"):
            for x in Prefetcher(items(), depth=depth):
                got.append(x)
        assert got == [0, 1, 2, 3, 4], f"depth {depth}"
    assert list(Prefetcher(range(7), depth=2)) == list(range(7))
    with pytest.raises(ValueError, match="depth"):
        Prefetcher(range(3), depth=-1)


def test_closing_a_prefetcher_stops_its_thread():
    def endless():
        yield from itertools.count()

    before = {t.name for t in threading.enumerate()}
    batches = Prefetcher(endless(), depth=2)
    assert list(itertools.islice(batches, 3)) == [0, 1, 2]
    batches.close()
    assert not any(t.name == "unilearn-prefetch" and t.is_alive() for t in threading.enumerate())
    assert {t.name for t in threading.enumerate()} <= before
    with pytest.raises(StopIteration):
        next(batches)


# a spec's fields that are the run's own, not config keys
RUN_OWN = {"store", "seed", "rank", "world_size", "pin_memory", "dfer_dataset", "sfer_dataset",
           "fold", "holdout", "sfer_fraction", "image_dataset", "video_dataset"}  # fmt: skip


def test_the_loader_spec_is_the_config_with_the_sfer_share_rule_applied_once(tmp_path):
    """Every field of a loader spec named as a config key is that key's value (the config's batch
    per rank, not a loader default); the SFER share is `sfer_proportion` when both tasks
    train and the whole set when SFER trains alone; `unilearn config` counts the steps of the
    same spec."""
    import dataclasses
    from pathlib import Path

    from unilearn.config import load_config
    from unilearn.config_cli import _finetune_steps
    from unilearn.engine.loader import finetune_spec, pretrain_spec

    paper = Path(__file__).parents[1] / "configs" / "paper.yaml"
    cfg = load_config(paper, ["finetune.sfer_proportion=0.3"])
    shard = {"rank": 1, "world_size": 4, "pin_memory": False}
    for experiment, dataset, fold, share in [("unilearn", "dfew", 1, 0.3),
                                             ("sfer_only", "affectnet7", None, 1.0),
                                             ("dfer_only", "mafw", 2, 1.0)]:  # fmt: skip
        resolved = cfg.resolve_experiment(experiment, dataset)
        rcfg = resolved.config
        spec = finetune_spec(rcfg, resolved, fold, tmp_path, None, **shard)
        assert spec.sfer_fraction == share, experiment
        assert (spec.dfer_dataset, spec.sfer_dataset) == (
            resolved.dfer_dataset,
            resolved.sfer_dataset,
        )
        for f in dataclasses.fields(spec):
            if f.name not in RUN_OWN:  # the first section with the key: finetune, model, data
                sections = (rcfg.finetune, rcfg.model, rcfg.data)
                owner = next(s for s in sections if f.name in type(s).model_fields)
                assert getattr(spec, f.name) == getattr(owner, f.name), f.name
        assert spec.batch_size == rcfg.finetune.batch_size and spec.seed == rcfg.seed
    pre = pretrain_spec(cfg, "video+video", tmp_path, **shard)
    assert (pre.image_dataset, pre.video_dataset) == ("voxceleb2", "voxceleb2")
    assert (pre.batch_size, pre.repeated_views) == (
        cfg.pretrain.batch_size,
        cfg.pretrain.repeated_views,
    )

    store = build_tiny_store(tmp_path)
    demo = Path(__file__).parents[1] / "configs" / "demo.yaml"
    cfg = load_config(
        demo,
        [
            "finetune.sfer_proportion=0.5",
            "finetune.batch_size=4",
            "finetune.selection.validation=null",
        ],
    )
    resolved = cfg.resolve_experiment("unilearn", "dfew")
    spec = finetune_spec(resolved.config, resolved, 1, store, None, rank=0, world_size=1,
                         pin_memory=False)  # fmt: skip
    assert _finetune_steps(resolved.config, resolved, 1, store, 1) == len(
        build_finetune_loader(spec, fetch_ahead())
    )
