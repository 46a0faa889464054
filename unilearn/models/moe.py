"""The ViT-MoE baseline (paper Table 3): in the expert blocks the FFN is replaced by n FFN experts
behind the same noisy top-k gate, capacity and optional load-balancing loss as MoAE (the same
`model.moae` settings: count, k, positions, gate, capacity).

Keys: `blocks.N.mlp.gate.{w_gate,w_noise}.{weight,bias}`, `blocks.N.mlp.experts.E.{fc1,fc2}.*`. Loading a
dense ViT checkpoint copies its FFN into every expert (sparse upcycling; see checkpoint.py).
"""

from __future__ import annotations

import torch
from timm.layers import Mlp
from torch import nn

from unilearn.models.routing import NoisyTopKGate, dispatch, group_tokens
from unilearn.models.vit import Block


class MoEFFN(nn.Module):
    """FFN(x) replaced by sum_i G(x)_i FFN_i(x), sparse (each token runs only its k FFNs)."""

    def __init__(
        self,
        dim: int,
        hidden: int,
        *,
        n_experts: int,
        top_k: int,
        aux_loss_coef: float,
        noisy_gating: bool,
        capacity_factor: float | None,
        capacity_group: int | None = None,
        drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.n_experts = n_experts
        self.capacity_group = capacity_group  # clips per capacity count in eval (see MoAE)
        self.gate = NoisyTopKGate(
            dim, n_experts, top_k, aux_loss_coef, noisy_gating, capacity_factor
        )
        self.experts = nn.ModuleList(
            Mlp(dim, hidden, act_layer=nn.GELU, drop=(0.0, drop)) for _ in range(n_experts)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        routing = self.gate(x, group_tokens(self, shape))
        return dispatch(x, routing, list(self.experts)).reshape(shape)


class MoEBlock(Block):
    """A ViT block whose FFN (`mlp`) is an `MoEFFN`."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        *,
        n_experts: int,
        top_k: int,
        aux_loss_coef: float,
        noisy_gating: bool,
        capacity_factor: float | None,
        capacity_group: int | None,
    ) -> None:
        super().__init__(dim, num_heads, mlp_ratio, qkv_bias, drop, attn_drop, drop_path)
        self.mlp = MoEFFN(
            dim, int(dim * mlp_ratio), n_experts=n_experts, top_k=top_k,
            aux_loss_coef=aux_loss_coef, noisy_gating=noisy_gating,
            capacity_factor=capacity_factor, capacity_group=capacity_group, drop=drop,
        )  # fmt: skip
