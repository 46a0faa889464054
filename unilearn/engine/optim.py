"""AdamW with the ViT fine-tuning parameter groups: layer-wise lr decay (BEiT/VideoMAE: embeddings
are layer 0, block i is layer i+1, norm and heads are layer depth+1; layer l gets lr *
layer_decay^(depth+1-l)) and no weight decay on norms, biases, position embeddings and mask tokens
(router weights are decayed, as the authors' fine-tuning does).

Which tensors are exempt from weight decay is a rule (`NO_DECAY_RULES`): `1d_tokens` (the above;
VideoMAE / MAE-DFER and the authors' fine-tuning) or `bias_norm` (the authors' pre-training,
their OmniVision optimiser config: the parameter-name pattern `*.bias` (fnmatch) and the
parameters of `nn.LayerNorm` modules; so `q_bias`, `v_bias` and `mask_token` ARE decayed, 33
tensors at ViT-B with its 4-block decoder).

Hand-written rather than timm's `param_groups_layer_decay`: that needs a timm `group_matcher` on
the model (ours has none; its fallback groups parameters by count, not by block).

AdamW is fused on CUDA (one kernel for all parameters, no host-device sync) and multi-tensor
(`foreach`) on CPU, which gives the same numbers as the per-parameter loop there. The step that
uses it is `unilearn.engine.step`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

import torch
from torch import nn

_BLOCK = re.compile(r"(?:^|\.)blocks\.(\d+)\.")
_EMBEDDING = ("patch_embed", "pos_embed", "cls_token", "mask_token")
# Never decayed: 1-D tensors (norms, biases) plus these (positions, tokens).
NO_WEIGHT_DECAY = ("pos_embed", "cls_token", "mask_token")
NO_DECAY_RULES = ("1d_tokens", "bias_norm")
# Device types AdamW runs fused on (one kernel for all parameters, no host-device sync). Not CPU:
# there `foreach` gives the per-parameter loop's numbers exactly, fused only within rounding.
FUSED_DEVICES = ("cuda",)


def _norm_params(model: nn.Module) -> set[str]:
    """Names of the parameters of `nn.LayerNorm` modules (exact class, as the authors' matcher)."""
    return {
        f"{prefix}.{name}" if prefix else name
        for prefix, module in model.named_modules()
        if type(module) is nn.LayerNorm
        for name, _ in module.named_parameters(recurse=False)
    }


def layer_id(name: str, num_layers: int) -> int:
    """Layer index of a parameter for layer-wise lr decay (0 .. num_layers + 1)."""
    match = _BLOCK.search(name)
    if match:
        return int(match.group(1)) + 1
    if any(name.startswith(p) or f".{p}" in name for p in _EMBEDDING):
        return 0
    return num_layers + 1


def param_groups(
    model: nn.Module,
    weight_decay: float,
    layer_decay: float = 1.0,
    no_weight_decay: Iterable[str] = (),
    no_decay_rule: str = "1d_tokens",
) -> list[dict]:
    """Parameter groups with `weight_decay` and `lr_scale` keys (`unilearn.engine.step.set_lr`
    multiplies by it); `no_decay_rule` picks the tensors without weight decay (see the module
    docstring)."""
    if no_decay_rule not in NO_DECAY_RULES:
        raise ValueError(f"no_decay_rule {no_decay_rule!r}: expected one of {NO_DECAY_RULES}")
    num_layers = model.get_num_layers() if hasattr(model, "get_num_layers") else 0
    skip = tuple(NO_WEIGHT_DECAY) + tuple(no_weight_decay)
    if hasattr(model, "no_weight_decay"):
        skip += tuple(model.no_weight_decay())
    norms = _norm_params(model) if no_decay_rule == "bias_norm" else set()
    groups: dict[str, dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if no_decay_rule == "bias_norm":
            decay = not (fnmatch.fnmatch(name, "*.bias") or name in norms)
        else:
            decay = not (param.ndim <= 1 or any(s in name for s in skip))
        layer = layer_id(name, num_layers) if layer_decay != 1.0 else 0
        key = f"layer_{layer}_{'decay' if decay else 'no_decay'}"
        if key not in groups:
            groups[key] = {
                "name": key,
                "params": [],
                "weight_decay": weight_decay if decay else 0.0,
                "lr_scale": layer_decay ** (num_layers + 1 - layer) if layer_decay != 1.0 else 1.0,
            }
        groups[key]["params"].append(param)
    return list(groups.values())


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    layer_decay: float = 1.0,
    no_decay_rule: str = "1d_tokens",
) -> torch.optim.AdamW:
    """AdamW over `param_groups(model, ...)`; per-step lr is set by
    `unilearn.engine.step.set_lr`. Fused when every
    parameter is a floating CUDA tensor, else `foreach` (build it after `model.to(device)`)."""
    groups = param_groups(model, weight_decay, layer_decay, no_decay_rule=no_decay_rule)
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), **adamw_kernel(model))


def adamw_kernel(model: nn.Module) -> dict[str, bool]:
    """`fused=True` when all trainable parameters are floating tensors on a `FUSED_DEVICES` device
    (CUDA), else `foreach=True` (CPU, a model split across devices, no trainable parameter)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if params and all(p.device.type in FUSED_DEVICES and p.is_floating_point() for p in params):
        return {"fused": True}
    return {"foreach": True}
