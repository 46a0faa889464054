"""Slurm time limits of GPU stages from the FLOP model: the closed-form count agrees with torch's
FLOP counter, more GPUs need less time, and a stage's own `time_min` (or the flag) wins."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from unilearn.config import load_config
from unilearn.launch.__main__ import _estimate_time, _run_of, parse
from unilearn.launch.estimate import (
    attention_flops,
    dense_flops,
    encoder_flops,
    estimate_time_min,
    patch_embed_flops,
    run_flops,
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


def test_time_limit_shrinks_with_gpus_and_grows_with_epochs():
    cfg = load_config("configs/paper.yaml")
    run = {"experiment": "unilearn", "dataset": "ferv39k"}
    one, four = (estimate_time_min(cfg, "finetune", run, g) for g in (1, 4))
    assert one > four >= cfg.launcher.time_estimate.min_min
    longer = cfg.with_overrides(["finetune.epochs=200"])
    assert run_flops(longer, "finetune", run) == pytest.approx(2 * run_flops(cfg, "finetune", run))
    assert (
        estimate_time_min(cfg, "pretrain", {"mode": "image+video"}, 4)
        <= cfg.launcher.time_estimate.max_min
    )


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
