"""How the reported epochs are picked (`finetune.selection`): the authors' validation pass scores
one clip per video at a position that moves with the epoch and is reproducible, with the router's
noise on only when asked; a validation split is held out of each training fold, stratified by
class, fixed by the seed, and never overlaps the test split or the rows left to train on."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from unilearn.catalogue import FOLDS
from unilearn.config import MoAEConfig
from unilearn.data.frame_sampling import finetune_indices, validation_indices
from unilearn.data.validation_split import Holdout, held_out
from unilearn.engine.best_epoch import noise_seed
from unilearn.models import eval_noise
from unilearn.models.routing import NoisyTopKGate


@pytest.fixture(scope="module")
def dfew(manifests_tiny) -> pd.DataFrame:
    return pd.read_parquet(manifests_tiny / "dfew.parquet")


@pytest.mark.parametrize("fold", FOLDS["dfew"])
def test_validation_split_is_disjoint_from_test_and_training_rows_per_fold(dfew, fold):
    rows = dfew[dfew.fold == fold]
    train, test = rows[rows.split == "train"], rows[rows.split == "test"]
    holdout = Holdout("dfew", 0.25, seed=0)
    held, rest = set(holdout.held(train).clip_id), set(holdout.rest(train).clip_id)
    assert held and rest
    assert not held & set(test.clip_id)  # never a test clip
    assert not held & rest and held | rest == set(train.clip_id)  # the fold, split in two
    # stratified: each class gives round(share x its rows), at most all but one
    counts = train.groupby("label").size()
    got = holdout.held(train).groupby("label").size().reindex(counts.index, fill_value=0)
    assert (got == ((0.25 * counts + 0.5).astype(int)).clip(upper=counts - 1)).all()


def test_validation_split_is_fixed_by_the_seed_not_the_row_order(dfew):
    train = dfew[(dfew.fold == 1) & (dfew.split == "train")].reset_index(drop=True)
    mask = held_out(train, 0.25, seed=0)
    shuffled = train.sample(frac=1.0, random_state=3).reset_index(drop=True)
    assert set(train.clip_id[mask]) == set(shuffled.clip_id[held_out(shuffled, 0.25, seed=0)])
    assert (held_out(train, 0.25, seed=0) == mask).all()
    assert any((held_out(train, 0.25, seed=s) != mask).any() for s in (1, 2, 3))
    with pytest.raises(ValueError, match="validation share 1.0"):
        held_out(train, 1.0, seed=0)


def test_authors_validation_clip_moves_with_the_epoch_and_is_reproducible():
    n, frames, stride = 120, 16, 4
    clips = {e: [validation_indices(n, frames, stride, 0, e, f"{v:05d}") for v in range(20)]
             for e in range(3)}  # fmt: skip
    for epoch, per_video in clips.items():
        assert all(len(c) == frames for c in per_video)  # ONE training-style window per video
        assert per_video == [validation_indices(n, frames, stride, 0, epoch, f"{v:05d}")
                             for v in range(20)]  # fmt: skip
        # a training-style window: num_frames spread over num_frames x stride frames
        assert all(c[-1] - c[0] <= frames * stride for c in per_video)
    assert clips[0] != clips[1] != clips[2]  # the positions change with the epoch
    assert len({c[0][0] for c in clips.values()} | {c[0] for c in clips[0]}) > 3  # and spread
    assert clips[0] != [validation_indices(n, frames, stride, 1, 0, f"{v:05d}") for v in range(20)]
    # a clip shorter than the window is covered as in training (no randomness left)
    import random

    assert validation_indices(30, 16, 4, 0, 5, "x") == finetune_indices(30, 16, 4, random.Random())


def test_router_noise_in_eval_only_when_asked():
    gate = NoisyTopKGate(16, MoAEConfig(n_experts=8, top_k=2, aux_loss_coef=0.0,
                                        noisy_gating=True, capacity_factor=None)).eval()  # fmt: skip
    with torch.no_grad():
        gate.w_noise.weight.normal_()  # large noise: routing changes between draws
    x = torch.randn(256, 16)
    a, b = gate(x), gate(x)
    assert torch.equal(a.weights, b.weights)  # off by default: deterministic tests
    with eval_noise(gate):
        assert gate.noise_in_eval
        c, d = gate(x), gate(x)
        assert not torch.equal(c.indices, d.indices)
        torch.manual_seed(noise_seed(0, 3))
        e = gate(x)
        torch.manual_seed(noise_seed(0, 3))
        assert torch.equal(e.indices, gate(x).indices)  # seeded per (seed, epoch): reproducible
    assert not gate.noise_in_eval and torch.equal(gate(x).weights, a.weights)  # put back
    gate.noisy_gating = False
    with eval_noise(gate):
        assert torch.equal(gate(x).weights, a.weights)  # no noise to draw
    assert noise_seed(0, 3) != noise_seed(0, 4) and noise_seed(0, 3) != noise_seed(1, 3)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from _stores import build_tiny_store

    return build_tiny_store(tmp_path_factory.mktemp("selection"), n_images=8, n_videos=1)


def test_loaders_train_on_the_rest_and_validate_on_the_held_out_rows(store):
    from _stores import eval_loader, finetune_loader

    from unilearn.data.store import load_store_table

    for fold in (1, 2):
        holdout = Holdout("dfew", 0.5, seed=0)
        train = finetune_loader(store, "dfew", None, fold=fold, num_frames=2, input_size=32,
                                batch_size=2, num_workers=0, holdout=holdout)  # fmt: skip
        val = eval_loader(store, "dfew", fold=fold, split="train", num_frames=2,
                          input_size=32, num_workers=0, holdout=holdout)  # fmt: skip
        trained = set(train.dataset.sources["dfer"].table.clip_id)
        held = set(val.dataset.table.clip_id)
        fold_train = set(load_store_table(store, "dfew", fold, "train").clip_id)
        fold_test = set(load_store_table(store, "dfew", fold, "test").clip_id)
        assert held and trained and not held & trained and held | trained == fold_train
        assert not held & fold_test


def test_authors_validation_loader_gives_one_clip_per_video_changing_with_the_epoch(store):
    from _stores import eval_loader

    def clips(epoch):
        loader = eval_loader(store, "dfew", fold=1, split="test", num_frames=2,
                             input_size=32, frame_stride=1, num_workers=0,
                             placement_seed=0)  # fmt: skip
        loader.set_epoch(epoch)
        return torch.cat([b["x"] for b in loader])

    first = clips(0)
    assert first.shape[1] == 1  # one clip per video
    assert torch.equal(first, clips(0))  # reproducible: a fresh loader, the same clips
    assert any(not torch.equal(first, clips(e)) for e in (1, 2, 3))


def test_unilearn_config_counts_the_steps_of_the_rows_left_to_train_on(store):
    from pathlib import Path

    from _stores import finetune_loader

    from unilearn.config import load_config
    from unilearn.config_cli import _finetune_steps

    demo = Path(__file__).parents[1] / "configs" / "demo.yaml"
    steps = []
    for share in (None, 0.5):
        cfg = load_config(demo, [f"finetune.selection.validation={share or 'null'}",
                                 "finetune.batch_size=2", "finetune.mixup=0"])  # fmt: skip
        resolved = cfg.resolve_experiment("dfer_only", "dfew")
        holdout = None if share is None else Holdout("dfew", share, cfg.seed)
        engine = finetune_loader(store, "dfew", None, fold=1, batch_size=2, num_workers=0,
                                 seed=cfg.seed, holdout=holdout)  # fmt: skip
        steps.append(_finetune_steps(cfg, resolved, 1, store, 1))
        assert steps[-1] == len(engine)
    assert steps[1] < steps[0]
