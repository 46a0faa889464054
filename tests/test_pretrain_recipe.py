"""The authors' pre-training recipe, detail by detail, checked against their code re-implemented
here from its description (their OmniVision trainer and config, fvcore's schedulers, their video
loader): which tensors are weight-decayed, the lr at every step, where a 16-frame clip may start,
and fp16 with a dynamic gradient scaler."""

from __future__ import annotations

import fnmatch
import math
import random

import pytest
import torch
from torch import nn

from unilearn.config import load_config
from unilearn.data.frame_sampling import pretrain_indices
from unilearn.engine.optim import param_groups
from unilearn.engine.schedule import build_schedule
from unilearn.models import create_model


def _decayed(groups) -> set[int]:
    return {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}


@pytest.fixture(scope="module")
def mae_base():
    """The paper's ViT-B MAE (4-block decoder), on the meta device: no memory for its weights."""
    cfg = load_config(["configs/paper.yaml"], [])
    name, kwargs = cfg.mae_spec()
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    assert next(model.parameters()).is_meta
    return model


def test_their_weight_decay_groups_decay_q_bias_v_bias_and_mask_token(mae_base):
    """Theirs: weight decay 0 for names matching `*.bias` (fnmatch) and for nn.LayerNorm
    parameters, 0.05 for everything else, so the 1-D `q_bias`/`v_bias` of every block and the
    decoder's `mask_token` are decayed: 33 tensors at ViT-B (12 + 4 blocks x 2, + 1)."""
    cfg = load_config(["configs/paper.yaml"], [])
    assert cfg.pretrain.no_weight_decay == "bias_norm"  # theirs by default
    norms = {
        f"{m}.{n}"
        for m, mod in mae_base.named_modules()
        if type(mod) is nn.LayerNorm
        for n, _ in mod.named_parameters(recurse=False)
    }
    theirs = {
        id(p)
        for n, p in mae_base.named_parameters()
        if not (fnmatch.fnmatch(n, "*.bias") or n in norms)
    }
    ours_default = _decayed(
        param_groups(mae_base, 0.05, no_decay_rule=cfg.pretrain.no_weight_decay)
    )
    assert ours_default == theirs
    by_1d = _decayed(param_groups(mae_base, 0.05, no_decay_rule="1d_tokens"))
    extra = {n for n, p in mae_base.named_parameters() if id(p) in theirs - by_1d}
    assert len(extra) == 33 and by_1d < theirs
    assert "mask_token" in extra and sum(n.endswith((".q_bias", ".v_bias")) for n in extra) == 32


def _fvcore_lr(where: float, lr: float) -> float:
    """fvcore CompositeParamScheduler([Linear(1e-6, lr), Cosine(lr, 0)], lengths [0.05, 0.95],
    interval_scaling ['rescaled', 'fixed']) at `where` = step / total steps (their trainer
    steps the schedulers before every optimiser step with exact_epoch / max_epochs)."""
    if where + 1e-6 <= 0.05:  # fvcore's WHERE_EPSILON
        f = where / 0.05
        return lr * f + 1e-6 * (1 - f)
    return 0.5 * lr * (1 + math.cos(math.pi * where))


def test_the_pretraining_lr_follows_their_composite_scheduler_at_every_step():
    cfg = load_config(["configs/paper.yaml"], ["pretrain.epochs=20", "pretrain.warmup_epochs=1"])
    steps_per_epoch, batch = 37, 384  # 2 GPUs x 192
    schedule = build_schedule(cfg.pretrain, batch, steps_per_epoch)
    lr = 1.6e-3 * batch / 512
    assert schedule.base_lr == pytest.approx(lr) and schedule.total_steps == 20 * 37
    for step in range(schedule.total_steps):
        assert schedule(step) == pytest.approx(_fvcore_lr(step / schedule.total_steps, lr),
                                               rel=1e-9, abs=1e-15), step  # fmt: skip
    # the MAE-style cosine over the post-warmup steps only (one key away) runs higher late on
    mae = build_schedule(cfg.pretrain.model_copy(update={"cosine_span": "after_warmup"}),
                         batch, steps_per_epoch)  # fmt: skip
    late = int(0.9 * schedule.total_steps)
    assert 1.09 < mae(late) / schedule(late) < 1.11


def test_a_pretraining_clip_may_start_on_any_frame():
    """Their loader draws the start of 16 frames at stride 4 uniformly from 0 .. n - 64, then
    steps by 4 while `offset + 4 < n` (1-based offsets): the start takes every residue mod 4."""

    def theirs(n: int, start: int) -> list[int]:
        offset, out = start + 1, []
        for _ in range(16):
            out.append(offset - 1)
            if offset + 4 < n:
                offset += 4
        return out

    rng = random.Random(0)
    starts = set()
    for n in (64, 65, 100, 203):
        for _ in range(200):
            state = rng.getstate()
            idx = pretrain_indices(n, 16, 4, rng)
            start = random.Random()
            start.setstate(state)
            assert idx == theirs(n, start.randrange(n - 64 + 1)), n
            assert 0 <= idx[0] <= n - 64 and idx[-1] < n
            starts.add(idx[0] % 4)
    assert starts == {0, 1, 2, 3}
    for n in (1, 2, 5, 30, 62, 63):  # shorter than 64 frames: from 0, the last frame repeated
        assert pretrain_indices(n, 16, 4, rng) == theirs(n, 0), n


def test_fp16_autocast_with_a_dynamic_grad_scaler():
    """`runtime.precision: fp16` is their amp (float16 autocast + GradScaler): the step runs
    under fp16 autocast, an overflowing step is skipped and halves the scale, a finite one
    updates the weights."""
    from unilearn.config import RuntimeConfig
    from unilearn.engine.distributed import DistInfo, autocast_dtype
    from unilearn.engine.step import StepContext, autocast, backward_step

    assert RuntimeConfig(precision="fp16").precision == "fp16"
    device = torch.device("cpu")
    assert autocast_dtype("fp16", device) == torch.float16
    torch.manual_seed(0)
    model = nn.Linear(8, 8)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=device)
    ctx = StepContext(opt, lambda s: 1e-2, device, info, torch.float16, scaler)
    x = torch.randn(4, 8)
    with autocast(ctx):
        out = model(x)
    assert out.dtype == torch.float16
    before = model.weight.detach().clone()
    backward_step(out.float().sum() * float("inf"), 0, model, ctx)  # an overflow: step skipped
    assert torch.equal(model.weight, before) and scaler.get_scale() == 2.0**9
    with autocast(ctx):
        loss = model(x).float().square().mean()
    backward_step(loss, 1, model, ctx)
    assert not torch.equal(model.weight, before) and scaler.get_scale() == 2.0**9
