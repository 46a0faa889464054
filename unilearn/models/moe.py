"""The ViT-MoE baseline (paper Table 3): in the expert blocks the FFN is replaced by n FFN experts
behind the same noisy top-k gate, capacity and optional load-balancing loss as MoAE (the same
`model.moae` settings: count, k, positions, gate, capacity).

Keys: `blocks.N.mlp.gate.{w_gate,w_noise}.{weight,bias}`, `blocks.N.mlp.experts.E.{fc1,fc2}.*`. Loading a
dense ViT checkpoint copies its FFN into every expert (sparse upcycling; see checkpoint.py).
"""

from __future__ import annotations

from typing import Any

import torch
from timm.layers import Mlp
from torch import nn

from unilearn.config import MoAEConfig
from unilearn.models.routing import Mixture, Routing, dispatch
from unilearn.models.vit import Block


class MoEFFN(Mixture):
    """FFN(x) replaced by sum_i G(x)_i FFN_i(x), sparse (each token runs only its k FFNs):
    `MoEFFN(dim, moae, hidden=..., drop=...)`."""

    def expert(self, dim: int, moae: MoAEConfig, *, hidden: int, drop: float) -> nn.Module:
        return Mlp(dim, hidden, act_layer=nn.GELU, drop=(0.0, drop))

    def combine(self, x: torch.Tensor, routing: Routing) -> torch.Tensor:
        return dispatch(x, routing, list(self.experts))


class MoEBlock(Block):
    """A ViT block whose FFN (`mlp`) is an `MoEFFN`; `block` are `Block`'s other arguments."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        moae: MoAEConfig,
        mlp_ratio: float,
        drop: float,
        **block: Any,
    ) -> None:
        super().__init__(dim, num_heads, mlp_ratio=mlp_ratio, drop=drop, **block)
        self.mlp = MoEFFN(dim, moae, hidden=int(dim * mlp_ratio), drop=drop)
