"""Slurm time limits of GPU stages from the FLOP model: the closed-form count agrees with torch's
FLOP counter, more GPUs need less time, and a stage's own `time_min` (or the flag) wins."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from unilearn.catalogue import sfer_fraction
from unilearn.config import load_config
from unilearn.errors import InputError
from unilearn.launch.__main__ import _estimate_time, _run_of, parse
from unilearn.launch.estimate import (
    attention_flops,
    dense_flops,
    encoder_flops,
    estimate_time_min,
    moae_flops,
    patch_embed_flops,
    run_flops,
    split_size,
)
from unilearn.models import create_model


def test_closed_form_encoder_flops_match_torchs_counter():
    model = create_model("vit_tiny_patch16_64", num_classes=7).eval()
    x = torch.randn(1, 3, 8, 64, 64)  # 4 x 4 x 4 = 64 tokens
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    # torch counts no FLOPs for CPU SDPA: the linear layers and the tubelet embedding are all it sees
    counted = counter.get_total_flops()
    assert dense_flops(64, 192, 4) + patch_embed_flops(64, 192, 2) == pytest.approx(
        counted, rel=0.01
    )
    assert encoder_flops(64, 192, 4) == dense_flops(64, 192, 4) + attention_flops(64, 192, 4)


def _clip_flops(cfg, tokens: int, moae_blocks: int) -> float:
    """Forward FLOPs of one UniLearn input of `tokens` tokens, from the parts checked above."""
    width, depth, _ = cfg.model.encoder_shape
    moae = cfg.model.moae
    return (
        patch_embed_flops(tokens, width, cfg.model.tubelet_size)
        + encoder_flops(tokens, width, depth)
        + moae_flops(tokens, width, moae_blocks, moae.top_k, moae.n_experts)
    )


def test_time_limit_is_the_runs_flops_over_peak_times_mfu_and_shrinks_with_gpus():
    cfg = load_config("configs/paper.yaml")
    est, ft, m = cfg.launcher.time_estimate, cfg.finetune, cfg.model
    patches = (m.input_size // 16) ** 2
    video, image = (
        _clip_flops(cfg, m.num_frames // m.tubelet_size * patches, 6),
        _clip_flops(cfg, patches, 6),
    )
    # UniLearn on FERV39K: every FERV39K training clip and half of AffectNet-7 per epoch,
    # forward + backward = 3 forwards
    clips, images = split_size("ferv39k", "train"), split_size("affectnet7", "train")
    flops = ft.epochs * 3 * (clips * video + ft.sfer_proportion * images * image)
    run = {"experiment": "unilearn", "dataset": "ferv39k"}
    assert run_flops(cfg, "finetune", run) == pytest.approx(flops)
    for gpus in (1, 4):
        seconds = flops / (gpus * est.gpu_peak_tflops * 1e12 * est.mfu)
        minutes = 10 * math.ceil((seconds * est.safety / 60 + est.startup_min) / 10)
        assert est.min_min < minutes < est.max_min  # not clamped: the formula decides
        assert estimate_time_min(cfg, "finetune", run, gpus) == minutes
    assert estimate_time_min(cfg, "finetune", run, 1) > estimate_time_min(cfg, "finetune", run, 4)


def test_an_sfer_only_run_is_estimated_on_the_whole_sfer_set_as_its_loader_reads_it():
    """`sfer_proportion` is the share of AffectNet used in JOINT fine-tuning; an SFER-only run
    trains on all of it (the loader's rule, `catalogue.sfer_fraction`), whatever the proportion."""
    cfg = load_config("configs/paper.yaml")
    patches = (cfg.model.input_size // 16) ** 2
    whole = (
        cfg.finetune.epochs * 3 * split_size("affectnet7", "train") * _clip_flops(cfg, patches, 6)
    )
    run = {"experiment": "sfer_only", "dataset": "affectnet7"}
    assert run_flops(cfg, "finetune", run) == pytest.approx(whole)
    quarter = cfg.with_overrides(["finetune.sfer_proportion=0.25"])
    assert run_flops(quarter, "finetune", run) == pytest.approx(whole)
    joint = {"experiment": "unilearn", "dataset": "ferv39k"}
    sfer_part = run_flops(cfg, "finetune", joint) - run_flops(quarter, "finetune", joint)
    assert sfer_part == pytest.approx((0.5 - 0.25) * whole)  # joint runs do take the proportion
    assert sfer_fraction(0.25, dfer=True, sfer=True) == 0.25
    assert sfer_fraction(0.25, dfer=False, sfer=True) == 1.0


def test_the_moae_blocks_counted_are_those_the_config_places():
    """Eq. 8-12 add the adapters' FLOPs only in the blocks `model.moae.position` names: the
    paper's later half (6 of ViT-B's 12), or an explicit list (one block here)."""
    cfg = load_config("configs/paper.yaml")
    m = cfg.model
    patches = (m.input_size // 16) ** 2
    tokens = m.num_frames // m.tubelet_size * patches
    run = {"experiment": "dfer_only", "dataset": "ferv39k"}  # DFER alone: no SFER images
    one = cfg.with_overrides(["model.moae.position=[11]"])
    per_block = (
        cfg.finetune.epochs
        * 3
        * split_size("ferv39k", "train")
        * (_clip_flops(cfg, tokens, 6) - _clip_flops(cfg, tokens, 5))
    )
    assert run_flops(cfg, "finetune", run) - run_flops(one, "finetune", run) == pytest.approx(
        5 * per_block
    )
    with pytest.raises(InputError, match="finetune: no --dataset"):
        run_flops(cfg, "finetune", {"experiment": "unilearn"})


def test_an_experiments_model_overrides_reach_the_estimate():
    """The shape counted is the experiment's own (its `overrides` applied), not the config's:
    an experiment that trains 8-frame clips costs what 8-frame clips cost."""
    cfg = load_config("configs/paper.yaml")
    run = {"experiment": "short", "dataset": "ferv39k"}
    base = cfg.with_overrides(
        [("experiments.short", {"arch": "vit", "pretrain": "video", "tasks": ["dfer"]})]
    )
    short = cfg.with_overrides(
        [
            (
                "experiments.short",
                {
                    "arch": "vit",
                    "pretrain": "video",
                    "tasks": ["dfer"],
                    "overrides": {"model.num_frames": 8},
                },
            )
        ]  # fmt: skip
    )
    m = cfg.model
    patches = (m.input_size // 16) ** 2
    per_clip = {
        t: patch_embed_flops(t, 768, m.tubelet_size) + encoder_flops(t, 768, 12)
        for t in (m.num_frames // m.tubelet_size * patches, 8 // m.tubelet_size * patches)
    }
    scale = cfg.finetune.epochs * 3 * split_size("ferv39k", "train")
    full, eight = (scale * f for f in per_clip.values())
    assert run_flops(base, "finetune", run) == pytest.approx(full)
    assert run_flops(short, "finetune", run) == pytest.approx(eight)


def test_pretraining_counts_the_views_an_epoch_trains_on():
    """Repeated sampling: `video_repeat` of the clips per epoch, `repeated_views` views each (the
    paper's 1/4 x 4 trains as many views as every clip once)."""
    cfg = load_config("configs/paper.yaml")
    run = {"mode": "video"}
    once = cfg.with_overrides(["pretrain.repeated_views=1", "pretrain.video_repeat=1.0"])
    assert run_flops(cfg, "pretrain", run) == pytest.approx(run_flops(once, "pretrain", run))
    half = cfg.with_overrides(["pretrain.video_repeat=0.5"])
    assert run_flops(half, "pretrain", run) == pytest.approx(2 * run_flops(cfg, "pretrain", run))


def test_a_stages_own_time_min_or_the_flag_wins_over_the_estimate():
    argv = ["finetune", "--config", "configs/paper.yaml", "--", "--experiment", "unilearn",
            "--dataset", "dfew", "--fold", "2"]  # fmt: skip
    args, stage_argv = parse(argv)
    assert _run_of(stage_argv) == {
        "mode": None,
        "experiment": "unilearn",
        "dataset": "dfew",
        "fold": 2,
    }
    cfg = load_config("configs/paper.yaml")
    assert _estimate_time(cfg, args)
    assert not _estimate_time(cfg.with_overrides(["launcher.stages.finetune.time_min=90"]), args)
    flagged, _ = parse([*argv[:3], "--slurm-time-min", "30", *argv[3:]])
    assert not _estimate_time(cfg, flagged)
