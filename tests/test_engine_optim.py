"""The fine-tuning optimiser and schedule: layer-wise lr decay by block depth, no weight decay on
norms/biases/positions, warmup + cosine per step, the multi-tensor AdamW on CPU giving the
per-parameter loop's numbers exactly (fused on CUDA), lr scaled by the global batch."""

from __future__ import annotations

import math

import pytest
import torch

from unilearn.config import MoAEConfig
from unilearn.engine.optim import adamw_kernel, build_optimizer, layer_id, param_groups
from unilearn.engine.schedule import WarmupCosine, build_schedule, scaled_lr
from unilearn.engine.step import set_lr
from unilearn.models import create_model


@pytest.fixture(scope="module")
def unilearn_tiny():
    return create_model(
        "unilearn_tiny_patch16_64", num_classes=7, num_classes_sfer=7, moae=MoAEConfig(n_experts=4)
    )


def _group_of(groups, model, name):
    param = dict(model.named_parameters())[name]
    return next(g for g in groups if any(p is param for p in g["params"]))


def test_layer_decay_follows_block_depth(unilearn_tiny):
    model, depth, decay = unilearn_tiny, 4, 0.75
    groups = param_groups(model, weight_decay=0.05, layer_decay=decay)
    assert _group_of(groups, model, "patch_embed.proj.weight")["lr_scale"] == decay ** (depth + 1)
    for i in range(depth):
        g = _group_of(groups, model, f"blocks.{i}.attn.qkv.weight")
        assert g["lr_scale"] == pytest.approx(decay ** (depth - i))
    assert _group_of(groups, model, "head.weight")["lr_scale"] == 1.0
    assert _group_of(groups, model, "head_sfer.weight")["lr_scale"] == 1.0
    # MoAE experts live in their block and decay with it
    moae = next(
        n for n, _ in model.named_parameters() if ".moae.experts." in n and n.startswith("blocks.3")
    )
    assert _group_of(groups, model, moae)["lr_scale"] == pytest.approx(decay)
    assert layer_id("encoder.blocks.2.mlp.fc1.weight", 4) == 3


def test_no_weight_decay_on_norms_and_biases_but_on_router_weights(unilearn_tiny):
    model = unilearn_tiny
    groups = param_groups(model, weight_decay=0.05, layer_decay=0.75)
    for name, param in model.named_parameters():
        wd = _group_of(groups, model, name)["weight_decay"]
        assert wd == (0.0 if param.ndim <= 1 else 0.05), name
    # the authors decay their router's weights (2-D), not its biases
    assert _group_of(groups, model, "blocks.3.moae.gate.w_gate.weight")["weight_decay"] == 0.05
    assert _group_of(groups, model, "blocks.3.moae.gate.w_gate.bias")["weight_decay"] == 0.0
    n_params = sum(len(g["params"]) for g in groups)
    assert n_params == len(list(model.parameters()))  # every parameter is optimised once


def test_set_lr_applies_layer_scale(unilearn_tiny):
    opt = build_optimizer(unilearn_tiny, lr=1e-3, weight_decay=0.05, layer_decay=0.5)
    set_lr(opt, 2e-3)
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(2e-3 * g["lr_scale"])


def test_warmup_then_cosine_per_step():
    s = WarmupCosine(base_lr=1e-3, min_lr=1e-6, warmup_steps=10, total_steps=110,
                     warmup_start_lr=0.0, cosine_span="after_warmup")  # fmt: skip
    assert s(0) == 0.0 and s(5) == pytest.approx(5e-4) and s(10) == pytest.approx(1e-3)
    assert s(60) == pytest.approx(1e-6 + (1e-3 - 1e-6) * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert s(110) == pytest.approx(1e-6) and s(500) == pytest.approx(1e-6)
    values = [s(i) for i in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert scaled_lr(1e-3, 512) == pytest.approx(2e-3) and scaled_lr(1e-3, 512, lr=5e-4) == 5e-4


def test_cpu_adamw_is_foreach_and_equals_the_per_parameter_loop():
    def train(kernel: dict) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = create_model("unilearn_tiny_patch16_64", num_classes=7, num_classes_sfer=7)
        groups = param_groups(model, weight_decay=0.05, layer_decay=0.75)
        opt = torch.optim.AdamW(groups, lr=1e-3, **kernel)
        x = torch.randn(2, 3, 8, 64, 64)
        for step in range(3):
            set_lr(opt, 1e-3 * (step + 1))
            loss = model(x, task="dfer").square().mean() + model.aux_loss()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return {k: v.clone() for k, v in model.state_dict().items()}

    model = create_model("unilearn_tiny_patch16_64", num_classes=7, num_classes_sfer=7)
    assert adamw_kernel(model) == {"foreach": True}  # fused only when every parameter is on CUDA
    assert build_optimizer(model, 1e-3, 0.05).defaults["foreach"] is True
    multi, loop = train({"foreach": True}), train({"foreach": False})
    assert all(torch.equal(multi[k], loop[k]) for k in loop)


def test_lr_scales_with_the_global_batch_of_all_nodes():
    from unilearn.config import FinetuneConfig

    ft = FinetuneConfig(blr=1e-3, lr=None, epochs=10, warmup_epochs=1)
    # 2 nodes x 4 GPUs x 16 clips = 128 clips per step: lr = blr x 128 / 256
    assert build_schedule(ft, 2 * 4 * 16, steps_per_epoch=10).base_lr == pytest.approx(5e-4)
    assert build_schedule(ft, 16, steps_per_epoch=10).base_lr == pytest.approx(1e-3 / 16)
