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

from unilearn.config import MIXTURE_ARCHS, typed_kwargs
from unilearn.models.moae import count_parameters
from unilearn.models.registry import create_model, model_arch


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
        if model_arch(args.model) in MIXTURE_ARCHS:  # its settings by their flat names -> `moae`
            overrides = typed_kwargs(overrides)
        with torch.device("meta"):
            model = create_model(args.model, **overrides)
    except ValueError as err:
        raise SystemExit(f"unilearn params: {err}") from None
    print(json.dumps(count_parameters(model, args.task)))
    return 0
