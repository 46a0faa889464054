"""Datasets, transforms, samplers and 5-D mixup: batch contract, determinism, one augmentation per
clip, the SFER proportion, CutMix boxes shared by all frames (the exact mid-epoch resume of the
training batches: tests/test_engine_loader.py)."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
import torch
from _stores import SHORT_SIDE, build_tiny_store, eval_loader, finetune_loader, pretrain_loader

from unilearn.catalogue import DFER_RANDAUGMENT
from unilearn.data.clip_dataset import ClipDataset
from unilearn.data.frame_sampling import eval_indices, finetune_indices, pretrain_indices
from unilearn.data.mixup import ClipMixup
from unilearn.data.randaugment import parse_randaug
from unilearn.data.samplers import JointBatchSampler, PretrainBatchSampler
from unilearn.data.store import load_store_table
from unilearn.data.transforms import EvalClipTransform, TrainClipTransform, normalize

KW = {"num_frames": 8, "input_size": 32, "batch_size": 4}
ONE = {"seed": 0, "rank": 0, "world_size": 1, "sfer_batch_factor": 1}  # one rank, the plain batch
ALL_VIDEOS = {"repeated_views": 1, "video_repeat": 1.0}  # one view of every video per epoch
CROP = {"scale": (0.08, 1.0), "erasing": 0.0, "randaug_order": "before_crop"}  # the config's


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_tiny_store(tmp_path_factory.mktemp("tiny"))


def _batches(loader) -> list[dict]:
    return [dict(b) for b in loader]


def test_finetune_batches_follow_the_contract(store):
    loader = finetune_loader(store, "dfew", "affectnet7", fold=1, num_workers=0, seed=0, **KW)
    batches = _batches(loader)
    assert len(batches) == len(loader) > 0
    dfew = load_store_table(store, "dfew", 1, "train")
    affectnet7 = load_store_table(store, "affectnet7", None, "train")
    assert 7 not in affectnet7["label"].tolist()  # AffectNet-7 leaves contempt out
    for b in batches:
        assert set(b) == {"x", "y", "task", "row"}
        assert (
            b["x"].dtype == torch.uint8
            and b["y"].dtype == torch.int64
            and b["row"].dtype == torch.int64
        )
        frames = 8 if b["task"] == "dfer" else 2  # images are one tubelet: 2 frames
        assert tuple(b["x"].shape) == (4, 3, frames, 32, 32)
        table = dfew if b["task"] == "dfer" else affectnet7
        assert b["y"].tolist() == table["label"].iloc[b["row"].numpy()].tolist()
    assert {b["task"] for b in batches} == {"dfer", "sfer"}


def test_eval_and_pretrain_batches_follow_the_contract(store):
    ev = _batches(eval_loader(store, "dfew", fold=1, num_workers=0, n_clips=2, **KW))
    test_rows = load_store_table(store, "dfew", 1, "test")
    assert torch.cat([b["row"] for b in ev]).tolist() == list(range(len(test_rows)))
    assert all(b["x"].shape[1:] == (2, 3, 8, 32, 32) and b["task"] == "dfer" for b in ev)
    images = _batches(eval_loader(store, "affectnet7", task="sfer", num_workers=0, **KW))
    assert all(b["x"].shape[1:] == (1, 3, 2, 32, 32) for b in images)
    pre = _batches(pretrain_loader(store, "affectnet", "voxceleb2", num_workers=0, seed=1, **KW))
    shapes = {b["modality"]: tuple(b["x"].shape[1:]) for b in pre}
    assert shapes == {"image": (3, 2, 32, 32), "video": (3, 8, 32, 32)}
    assert all((b["y"] == -1).all() for b in pre if b["modality"] == "video")
    vv = _batches(
        pretrain_loader(store, "voxceleb2", "voxceleb2", num_workers=0, **KW)
    )  # video+video
    assert {b["modality"] for b in vv} == {"image", "video"}


def test_same_seed_gives_the_same_batches_with_any_number_of_workers(store):
    def run(seed, workers):
        loader = finetune_loader(
            store, "dfew", "affectnet7", fold=1, num_workers=workers, seed=seed, **KW
        )
        loader.set_epoch(3)
        return _batches(loader)

    a, b, c = run(0, 0), run(0, 2), run(1, 0)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (
            x["task"] == y["task"]
            and torch.equal(x["row"], y["row"])
            and torch.equal(x["x"], y["x"])
        )
    assert any(
        not torch.equal(x["x"], z["x"]) for x, z in zip(a, c) if x["x"].shape == z["x"].shape
    )


def test_sfer_proportion_is_honoured_within_one_percent_and_batches_interleave():
    for proportion in (0.25, 0.5, 1.0):
        sampler = JointBatchSampler(
            dfer_size=3000, sfer_size=10000, batch_size=16, sfer_proportion=proportion, **ONE
        )
        sampler.set_epoch(1)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        sfer = {i for b in batches for src, i, _ in b if src == "sfer"}
        dfer = {i for b in batches for src, i, _ in b if src == "dfer"}
        assert abs(len(sfer) / 10000 - proportion) <= 0.01
        assert dfer == set(range(3000))  # all of the DFER set every epoch
        assert all(len({src for src, _, _ in b}) == 1 for b in batches)  # one source per batch
        sources = [b[0][0] for b in batches]
        half = len(sources) // 2
        assert {"sfer", "dfer"} <= set(sources[:half]) and {"sfer", "dfer"} <= set(sources[half:])
    # the SFER subset is fixed for the run unless resampled each epoch
    fixed = JointBatchSampler(100, 1000, 8, 0.5, **ONE)
    assert np.array_equal(fixed.subset("sfer", 0), fixed.subset("sfer", 1))
    redrawn = JointBatchSampler(100, 1000, 8, 0.5, **ONE, resample_sfer_each_epoch=True)
    assert not np.array_equal(redrawn.subset("sfer", 0), redrawn.subset("sfer", 1))


def test_samplers_shard_ranks_and_are_deterministic():
    world = [
        PretrainBatchSampler(50, 30, 4, 1.0, seed=7, rank=r, world_size=3, **ALL_VIDEOS)
        for r in range(3)
    ]
    per_rank = [list(s) for s in world]
    assert len({len(b) for b in per_rank}) == 1 and len(per_rank[0]) == len(world[0])
    for step in zip(*per_rank):
        assert len({b[0][0] for b in step}) == 1  # every rank trains the same modality at a step
    items = [(src, i) for batches in per_rank for b in batches for src, i, _ in b]
    assert {i for src, i in items if src == "image"} == set(range(50))
    assert [
        list(s)
        for s in [PretrainBatchSampler(50, 30, 4, 1.0, seed=7, rank=1, world_size=3, **ALL_VIDEOS)]
    ][0] == per_rank[1]
    other_epoch = PretrainBatchSampler(50, 30, 4, 1.0, seed=7, rank=1, world_size=3, **ALL_VIDEOS)
    other_epoch.set_epoch(1)
    assert list(other_epoch) != per_rank[1]


def test_frames_of_one_clip_get_one_augmentation():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)
    clip = np.repeat(frame[None], 6, axis=0)  # six identical frames
    transform = TrainClipTransform(32, "rand-m9-n6-mstd0.5-inc1", **CROP)
    changed = 0
    for seed in range(40):
        out = transform(clip, random.Random(seed))
        assert out.shape == (3, 6, 32, 32) and out.dtype == torch.uint8
        assert all(torch.equal(out[:, 0], out[:, t]) for t in range(1, 6))
        changed += not torch.equal(out, transform(clip, random.Random(seed + 1000)))
        assert torch.equal(out, transform(clip, random.Random(seed)))  # a pure function of the seed
    assert changed == 40
    evaluated = EvalClipTransform(32)(clip)
    assert evaluated.shape == (3, 6, 32, 32) and torch.equal(evaluated[:, 0], evaluated[:, 5])


def test_cutmix_cuts_the_same_box_in_every_frame():
    b, c, t, h, w = 4, 3, 8, 32, 32
    x = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1, 1).expand(b, c, t, h, w).contiguous()
    y = torch.tensor([0, 1, 2, 3])
    cutmix = ClipMixup(
        5, mixup_alpha=0.0, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, label_smoothing=0.0
    )
    for seed in range(5):
        mixed, soft = cutmix(x.clone(), y, seed=seed)
        pasted = mixed[0] != 0  # sample 0 receives pixels of sample 3 inside the box
        box = pasted[0, 0]
        assert all(torch.equal(pasted[ci, ti], box) for ci in range(c) for ti in range(t))
        assert torch.allclose(soft.sum(1), torch.ones(b))
        area = box.float().mean().item()
        assert soft[0, 0].item() == pytest.approx(1 - area, abs=1e-5)
        again, _ = cutmix(x.clone(), y, seed=seed)
        assert torch.equal(mixed, again)
    mixup = ClipMixup(
        5, mixup_alpha=0.8, cutmix_alpha=0.0, prob=1.0, switch_prob=0.5, label_smoothing=0.1
    )
    mixed, soft = mixup(x.clone(), y, seed=0)
    assert mixed.shape == x.shape and soft.shape == (b, 5)


def test_temporal_sampling_follows_mae_dfer():
    rng = random.Random(0)
    idx = finetune_indices(100, 16, 4, rng)
    assert (
        len(idx) == 16
        and idx == sorted(idx)
        and idx[-1] - idx[0] <= 64
        and 3 <= idx[1] - idx[0] <= 5
    )
    short = finetune_indices(20, 16, 4, rng)  # shorter than the window: covered, then padded
    assert (
        short[:5] == [0, 5, 10, 15, 19] and short[5:] == [19] * 11
    )  # np.linspace(0, 20, 5), clipped
    pre = pretrain_indices(100, 16, 4, rng)
    assert np.all(np.diff(pre) == 4)
    first, last = eval_indices(100, 16, 4, n_clips=2)
    assert first[0] == 0 and last[-1] == 96 and np.all(np.diff(first) == 4)
    assert eval_indices(10, 16, 4, 2)[0] == [0, 4, 8] + [8] * 13


def test_normalize_uses_imagenet_statistics():
    x = torch.full((2, 3, 2, 4, 4), 255, dtype=torch.uint8)
    out = normalize(x)
    assert out.dtype == torch.float32
    assert out[0, :, 0, 0, 0].tolist() == pytest.approx(
        [(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225], rel=1e-5
    )


def test_randaug_spec_is_parsed_as_timm():
    cfg = parse_randaug("rand-m7-n4-mstd0.5-inc1")
    assert (cfg.magnitude, cfg.num_ops, cfg.magnitude_std, cfg.increasing) == (7, 4, 0.5, True)
    assert parse_randaug("none") is None
    with pytest.raises(ValueError, match="unknown part"):
        parse_randaug("rand-m7-q3")


def test_unreadable_clip_is_substituted_and_counted(store):
    table = load_store_table(store, "dfew", 1, "train").copy()
    table.loc[0, "store_key"] = "dfew/shard-00099.ulc:0"  # a shard that does not exist
    ds = ClipDataset(
        store,
        table,
        mode="train",
        num_frames=8,
        input_size=32,
        frame_stride=4,
        transform=TrainClipTransform(32, DFER_RANDAUGMENT, **CROP),
    )
    clip, label, row = ds[(0, 123)]
    assert row == 1 and label == table["label"][1] and ds.substitutions == 1
    assert isinstance(pd.DataFrame(table), pd.DataFrame) and clip.shape == (3, 8, 32, 32)
    assert SHORT_SIDE >= 32


# ---- the authors' recipe: SFER stream, erasing, image augmentation, repeated sampling --------------


def test_balanced_sfer_stream_is_fresh_each_epoch_class_balanced_and_a_function_of_seed_and_epoch():
    # 90% of the SFER set in class 0: the authors' oversampler draws every class equally often
    labels = [0] * 900 + [1] * 50 + [2] * 50
    sampler = JointBatchSampler(100, 1000, 8, 0.5, **ONE | {"seed": 3}, sfer_labels=labels)
    epoch0, epoch1 = sampler.subset("sfer", 0), sampler.subset("sfer", 1)
    assert len(epoch0) == len(epoch1) == 500  # the proportion, drawn with replacement
    counts = np.bincount(np.asarray(labels)[epoch0], minlength=3)
    assert (np.abs(counts / 500 - 1 / 3) < 0.08).all()
    assert not np.array_equal(epoch0, epoch1)  # a fresh draw every epoch
    again = JointBatchSampler(100, 1000, 8, 0.5, **ONE | {"seed": 3}, sfer_labels=labels)
    assert np.array_equal(again.subset("sfer", 1), epoch1)  # pure function of (seed, epoch)


def test_sfer_batch_factor_makes_image_batches_larger_and_counts_steps_by_them():
    sampler = JointBatchSampler(64, 256, 8, 1.0, **ONE | {"sfer_batch_factor": 2})
    sampler.set_epoch(0)
    sizes = {(b[0][0], len(b)) for b in sampler}
    assert sizes == {("dfer", 8), ("sfer", 16)}
    assert len(sampler) == 64 // 8 + 256 // 16


def test_random_erasing_cuts_one_box_shared_by_every_frame():
    from unilearn.data.transforms import random_erase

    clip = np.full((3, 4, 32, 32), 7, np.uint8)
    out = random_erase(clip.copy(), 1.0, random.Random(0), "zero")
    erased = out[0, 0] == 0
    assert 0 < erased.mean() <= 1 / 3 + 0.05
    assert all(np.array_equal(out[c, t] == 0, erased) for c in range(3) for t in range(4))
    noisy = random_erase(clip.copy(), 1.0, random.Random(0), "pixel")
    changed = noisy != 7  # noise equal to 7 by chance is rare
    assert changed.any() and (changed[:, 0] == changed[:, 3]).mean() > 0.99
    assert np.array_equal(random_erase(clip.copy(), 0.0, random.Random(0)), clip)


def test_authors_image_augmentation_resizes_then_crops_without_leaving_the_image():
    from unilearn.data.transforms import ResizeCropImageTransform

    image = np.random.default_rng(0).integers(1, 255, (1, 40, 48, 3), dtype=np.uint8)
    aug = ResizeCropImageTransform(32, 38, randaug=None, erasing=0.0, hflip=0.0)
    out = aug(image, random.Random(1))
    assert tuple(out.shape) == (3, 1, 32, 32)
    # a crop inside the resized image: no border fill anywhere
    fill = torch.tensor([124, 116, 104], dtype=torch.uint8).view(3, 1, 1, 1)
    assert not (out == fill).all(dim=0).any()
    assert torch.equal(aug(image, random.Random(1)), out)


def test_repeated_sampling_gives_views_of_one_decoded_clip_each_augmented_on_its_own(store):
    loader = pretrain_loader(
        store, None, "voxceleb2", num_workers=0, seed=2, augment="resized", repeated_views=2,
        num_frames=8, input_size=32, batch_size=4,
    )  # fmt: skip
    batches = _batches(loader)
    videos = load_store_table(store, "voxceleb2", None, "train")
    assert all(tuple(b["x"].shape) == (4, 3, 8, 32, 32) for b in batches)  # batch_size = views
    for b in batches:
        rows = b["row"].tolist()
        assert rows[0::2] == rows[1::2]  # consecutive rows are views of one clip
        assert not torch.equal(b["x"][0], b["x"][1])  # each its own crop
    # one epoch decodes each clip once and yields `views` rows per clip
    assert sum(len(b["x"]) for b in batches) == 2 * len(videos) + (-2 * len(videos)) % 4


def test_video_repeat_decodes_a_fresh_part_of_the_videos_each_epoch():
    sampler = PretrainBatchSampler(
        0, 400, 8, 1.0, seed=0, rank=0, world_size=1, repeated_views=4, video_repeat=0.25
    )
    assert len(sampler) == 100 // 2  # 100 clips per epoch, 2 clips (8 views) per batch
    assert not np.array_equal(sampler.subset("video", 0), sampler.subset("video", 1))


def test_repeated_views_written_into_the_batch_equal_the_item_by_item_views(store):
    from unilearn.data.batches import SourceDataset, collate_pretrain
    from unilearn.data.transforms import ResizedCropPretrainTransform

    table = load_store_table(store, "voxceleb2", None, "train")
    ds = ClipDataset(store, table, "pretrain", num_frames=8, input_size=32, frame_stride=4, views=3,
                     transform=ResizedCropPretrainTransform(32, (0.08, 1.0), short_side=38))  # fmt: skip
    source = SourceDataset({"video": ds})
    items = [("video", i % len(ds), 100 + i) for i in range(4)]
    fast = collate_pretrain(source.__getitems__(items))
    slow = collate_pretrain([source[it] for it in items])
    assert torch.equal(fast["x"], slow["x"]) and torch.equal(fast["row"], slow["row"])
    assert fast["x"].shape == (12, 3, 8, 32, 32) and fast["modality"] == "video"


def test_views_cut_on_the_device_match_the_views_cut_in_the_loader(store):
    from unilearn.data.batches import SourceDataset, collate_pretrain
    from unilearn.data.transforms import ResizedCropPretrainTransform, crop_views_on_device

    table = load_store_table(store, "voxceleb2", None, "train")
    aug = ResizedCropPretrainTransform(32, (0.3, 1.0), short_side=36, hflip=0.5)
    make = lambda on_device: SourceDataset({"video": ClipDataset(  # noqa: E731
        store, table, "pretrain", num_frames=8, input_size=32, frame_stride=4, views=3, transform=aug,
        crop_on_device=on_device)})  # fmt: skip
    items = [("video", i % len(table), 7 + i) for i in range(4)]
    cpu = collate_pretrain(make(False).__getitems__(items))
    dev = collate_pretrain(make(True).__getitems__(items))
    assert dev["x"].shape[:2] == (4, 8) and dev["boxes"].shape == (12, 4)  # each clip once
    assert torch.equal(dev["row"], cpu["row"]) and torch.equal(dev["y"], cpu["y"])
    cut = crop_views_on_device(dev["x"], dev["boxes"], dev["flip"], dev["views"], 32)
    assert cut.shape == cpu["x"].shape
    diff = (cut - cpu["x"].float()).abs()
    assert diff.mean() < 1.0 and (diff <= 1.0).float().mean() > 0.95  # rounding, crop borders


@pytest.mark.parametrize("on_device", [False, True], ids=["cut-in-loader", "cut-on-device"])
def test_repeated_view_batches_are_the_same_from_worker_processes(store, on_device):
    def batches(workers):
        return _batches(pretrain_loader(
            store, "affectnet", "voxceleb2", num_workers=workers, seed=2, augment="resized",
            repeated_views=2, crop_on_device=on_device, **KW))  # fmt: skip

    here, there = batches(0), batches(2)  # workers build batches in shared memory
    assert len(here) == len(there) > 0
    for a, b in zip(here, there):
        assert a["modality"] == b["modality"] and torch.equal(a["x"], b["x"])
        assert ("boxes" in a) == (on_device and a["modality"] == "video")


def test_sfer_proportion_applies_only_when_both_tasks_train(store):
    """Joint fine-tuning uses `sfer_proportion` of the SFER set; SFER alone uses all of it (the
    rule the Slurm time estimate reads too: `catalogue.sfer_fraction`)."""
    images = len(load_store_table(store, "affectnet7", None, "train"))

    def sfer_rows(dfer):
        loader = finetune_loader(store, dfer, "affectnet7", fold=1, num_workers=0, seed=0,
                                       sfer_proportion=0.5, **KW)  # fmt: skip
        return {r for b in loader if b["task"] == "sfer" for r in b["row"].tolist()}

    assert len(sfer_rows(None)) == images
    assert len(sfer_rows("dfew")) == round(0.5 * images) < images
