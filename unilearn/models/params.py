"""Print a model's parameter counts as JSON: {"total": N, "active": N} (paper Table 3).

Total: every parameter (both heads, all n experts, the gates' noise weights). Active: what one
token uses at inference: k of the n experts of each gated block, the gate's Wg but not its
Wnoise and bnoise (no noise at inference), and only the head of --task. Position tables are
fixed, not parameters. The model is built on the meta device (instant, no memory). Defaults: ViT-B 16x160^2,
7 DFER classes (+ 7 SFER for unilearn/vit_moe). Example: `unilearn params
unilearn_base_patch16_160` prints {"total": 100513646, "active": 89819959} (the router biases,
as the authors', add 2 n per MoAE layer to the total and n to the active count).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch
import yaml
from torch import nn

from unilearn.engine.cli_args import add_params_arguments as add_arguments  # noqa: F401
from unilearn.models.moae import NoisyTopKGate
from unilearn.models.registry import allowed_overrides, create_model


def _numel(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def count_parameters(model: nn.Module, task: str = "dfer") -> dict[str, int]:
    """`{"total", "active"}` parameter counts of `model` for one token of `task` at inference."""
    total = _numel(model)
    inactive = 0
    for module in model.modules():
        gate = getattr(module, "gate", None)
        experts = getattr(module, "experts", None)
        if isinstance(gate, NoisyTopKGate) and isinstance(experts, nn.ModuleList):
            per_expert = [_numel(e) for e in experts]
            # the n - k experts a token skips (experts are equal-sized; take the largest to be safe)
            inactive += sum(sorted(per_expert)[: gate.n_experts - gate.top_k])
            inactive += _numel(gate.w_noise)
    other_head = {"dfer": "head_sfer", "sfer": "head"}[task]
    inactive += _numel(getattr(model, other_head, None))
    return {"total": total, "active": total - inactive}


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`key=value` strings -> kwargs; values are YAML scalars/lists (`moae_position=[0,2]`)."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r}: expected key=value")
        overrides[key] = yaml.safe_load(value)
    return overrides


def main(args: argparse.Namespace) -> int:
    try:
        overrides = parse_overrides(args.overrides)
        with torch.device("meta"):
            model = create_model(args.model, **overrides)
    except ValueError as err:
        raise SystemExit(f"unilearn params: {err}") from None
    print(json.dumps(count_parameters(model, args.task)))
    return 0


__all__ = ["add_arguments", "allowed_overrides", "count_parameters", "main", "parse_overrides"]
