"""Mixture of Adapter Experts (paper Eq. 7-12): bottleneck adapter experts, their sparse
mixture, the MoAE layer (MoAE parallel to the FFN), the ViT-MoE baseline (Table 3: in the
expert blocks the FFN is replaced by n FFN experts behind the same gate, capacity and settings),
expert-usage counting (Figure 4a) and the parameter counts of a mixture model (Table 3;
`unilearn params` prints them).

ViT-MoE's keys: `blocks.N.mlp.gate.{w_gate,w_noise}.{weight,bias}`,
`blocks.N.mlp.experts.E.{fc1,fc2}.*`. Loading a dense ViT checkpoint copies its FFN into every
expert (sparse upcycling; see checkpoint.py). The gate, the capacity and the generic dispatch are
`unilearn.models.routing`.

Equation numbers are the paper's: Eq. 7 the adapter, Eq. 8 the mixture, Eq. 9-12 the layer.
Where the paper's text and the authors' released code (MSA-LMC/S4D, `finetune/s4d/videomae.py`,
MoE type `moe_adapters`) differ, the code is the default and the text is one argument away
(docs/models.md, "Differences between the paper's text and the authors' code"): experts without
the inner residual (`expert_residual=False`), router Linear layers with a bias, and an expert
capacity of int(M k / n) tokens in token order (`capacity_factor=1.0`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import nn

from unilearn.catalogue import ADAPTER_RATIO
from unilearn.config import MoAEConfig
from unilearn.models.routing import (
    Mixture,
    NoisyTopKGate,
    Routing,
    dispatch,
    expert_slices,
    init_linear,
    slot_table,
)
from unilearn.models.vit import Block


class Adapter(nn.Module):
    """Eq. 7, one adapter expert with bottleneck r = int(dim * adapter_ratio):
    delta(x) = W2 GELU(W1 x + b1) + b2.

    `residual=False` (the authors' code: `Mlp(skip_connect=False)`) returns delta(x);
    `residual=True` (the paper's Eq. 7) returns x + delta(x). Weights start as the authors':
    truncated normal (std 0.02), zero biases."""

    def __init__(self, dim: int, adapter_ratio: float, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        bottleneck = int(dim * adapter_ratio)
        self.fc1 = nn.Linear(dim, bottleneck)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(bottleneck, dim)
        self.init_own_weights()

    def init_own_weights(self) -> None:
        init_linear(self.fc1)
        init_linear(self.fc2)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The bottleneck activation GELU(W1 x + b1)."""
        return self.act(self.fc1(x))

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """The adapter without an inner residual: W2 GELU(W1 x + b1) + b2."""
        return self.fc2(self.hidden(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.delta(x) if self.residual else self.delta(x)


def dispatch_adapters(
    x: torch.Tensor, routing: Routing, experts: Sequence[Adapter]
) -> torch.Tensor:
    """`dispatch` of adapters, computed as [g x] + G(x) B2 + sum_j W2_j (g_j h_j): the same sum,
    since g (W2 h + b2) = W2 (g h) + g b2, but the gate values scale the r-wide bottleneck
    instead of the d-wide output and the biases come from one [M, n] x [n, d] matmul. The
    inner residual (Eq. 7 as written) adds x times the kept gate mass of the token (1 when no
    pair is dropped).

    Under a capacity all experts run at once: one gather of their slots (`slot_table`), two
    batched matmuls over the stacked adapter weights, one `index_add` back. Measured on 2 CPU
    cores at ViT-B shapes (3,200 pairs, r = 192, fwd + bwd, min of 25 interleaved runs):
    `bmm` over the slots 83 ms, `torch._grouped_mm` over the kept rows sorted by expert 150 ms,
    a per-expert loop of `F.linear` 208-227 ms, one `F.linear` pair over all 3,200 rows (the
    FLOP floor) 109 ms. Idle slots (one per dropped pair at capacity factor 1.0) run through
    the matmuls: `bmm` stays the fastest until about 45% of the pairs are dropped, and it is
    sync-free on CUDA (grouped GEMMs there want the per-expert sizes on the host or bf16).
    """
    gates = routing.dense(len(experts))
    biases = torch.stack([expert.fc2.bias for expert in experts])
    # the sum accumulates in x's dtype (fp32 under autocast), whatever dtype the matmuls give
    out = gates.to(biases.dtype) @ biases
    if experts[0].residual:
        out = out + x * gates.sum(1, keepdim=True).to(x.dtype)
    out = out.to(torch.promote_types(out.dtype, x.dtype))
    if routing.capacity is None:  # sizes vary: one expert at a time (one host sync)
        for e, rows, w in expert_slices(routing, len(experts)):
            chunk = x.index_select(0, rows)
            y = F.linear(experts[e].hidden(chunk) * w.to(chunk.dtype), experts[e].fc2.weight)
            out.index_add_(0, rows, y.to(out.dtype))
        return out
    rows, w = slot_table(routing, len(experts))
    n, s = rows.shape
    chunk = x.index_select(0, rows.reshape(-1)).view(n, s, -1)
    y = SlotAdapters.apply(
        chunk,
        w,
        torch.stack([expert.fc1.weight for expert in experts]),  # [n, r, d]
        torch.stack([expert.fc1.bias for expert in experts]),  # [n, r]
        torch.stack([expert.fc2.weight for expert in experts]),  # [n, d, r]
    )
    out.index_add_(0, rows.reshape(-1), y.reshape(n * s, -1).to(out.dtype))
    return out


class SlotAdapters(torch.autograd.Function):
    """The n adapters on their slots: y = (GELU(chunk W1^T + b1) * w) W2^T, batched over the
    experts (`chunk [n, S, d]`, gate values `w [n, S, 1]`, stacked weights `W1 [n, r, d]`,
    `b1 [n, r]`, `W2 [n, d, r]`; the adapters' `nn.GELU()`, exact). The same products as autograd's `baddbmm` / GELU / `bmm`
    (equal in fp32 on CPU), with the backward written out only so that the weight gradients
    come out in the weights' own layout: autograd's would be transposed views, which every
    `AccumulateGrad` then copies (~6% of the layer's fwd + bwd at ViT-B shapes on 2 cores).
    Matmuls run in the autocast dtype of the input's device, as those ops would under autocast;
    the gradients return in the inputs' dtypes."""

    @staticmethod
    def forward(ctx, chunk, w, w1, b1, w2):  # type: ignore[override]
        device = chunk.device.type
        dtype = (
            torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else chunk.dtype
        )
        ctx.dtypes = (chunk.dtype, w.dtype, w1.dtype, b1.dtype, w2.dtype)
        with torch.autocast(device, enabled=False):
            chunk, w1, b1, w2 = (t.to(dtype) for t in (chunk, w1, b1, w2))
            w = w.to(dtype)
            h = torch.baddbmm(b1.unsqueeze(1), chunk, w1.transpose(1, 2))  # [n, S, r]
            a = F.gelu(h)
            g = a * w
            y = torch.bmm(g, w2.transpose(1, 2))  # [n, S, d]
        ctx.save_for_backward(chunk, w, w1, w2, h, a, g)
        return y

    @staticmethod
    def backward(ctx, grad_y):  # type: ignore[override]
        chunk, w, w1, w2, h, a, g = ctx.saved_tensors
        with torch.autocast(chunk.device.type, enabled=False):
            grad_y = grad_y.to(g.dtype)
            grad_w2 = torch.bmm(grad_y.transpose(1, 2), g)  # [n, d, r], W2's layout
            grad_g = torch.bmm(grad_y, w2)  # [n, S, r]
            grad_w = (grad_g * a).sum(-1, keepdim=True)
            grad_h = torch.ops.aten.gelu_backward(grad_g * w, h)
            grad_w1 = torch.bmm(grad_h.transpose(1, 2), chunk)  # [n, r, d], W1's layout
            grad_chunk = torch.bmm(grad_h, w1)  # [n, S, d]
            grads = (grad_chunk, grad_w, grad_w1, grad_h.sum(1), grad_w2)
        return tuple(t.to(d) for t, d in zip(grads, ctx.dtypes, strict=True))


class MoAE(Mixture):
    """Eq. 8: MoAE(x) = sum_i G(x)_i Adapter_i(x), computed sparsely (only the k chosen
    adapters of a token run, and only within their capacity). The bottleneck is the
    catalogue's `ADAPTER_RATIO` of the width."""

    def expert(self, dim: int, moae: MoAEConfig) -> Adapter:
        return Adapter(dim, ADAPTER_RATIO, moae.expert_residual)

    def combine(self, x: torch.Tensor, routing: Routing) -> torch.Tensor:
        return dispatch_adapters(x, routing, list(self.experts))


class MoAEBlock(Block):
    """Eq. 9-12, the MoAE layer: x' = x + MHSA(LN(x)) (Eq. 9); x_g = FFN(LN(x')) (Eq. 10);
    x_s = MoAE(LN(x')) (Eq. 11); out = x' + x_g + x_s (Eq. 12). The MoAE runs beside the FFN on
    the same LN(x'); it replaces nothing, so every pre-trained ViT weight keeps its key. Drop
    path covers the sub-layer as a whole (as the authors' `BlockMoEAdapters`). `block` are
    `Block`'s arguments."""

    def __init__(self, dim: int, num_heads: int, *, moae: MoAEConfig, **block: Any) -> None:
        super().__init__(dim, num_heads, **block)
        self.moae = MoAE(dim, moae)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        h = self.norm2(x)
        return x + self.drop_path(self.mlp(h) + self.moae(h))


# -- the ViT-MoE baseline (Table 3) ------------------------------------------------------------
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


# -- expert usage (Figure 4a) and parameter counts (Table 3) -----------------------------------
_BLOCK_INDEX = re.compile(r"(?:^|\.)blocks\.(\d+)\.")


def _gates(model: nn.Module) -> dict[int, NoisyTopKGate]:
    gates = {}
    for name, module in model.named_modules():
        if isinstance(module, NoisyTopKGate):
            match = _BLOCK_INDEX.search(name)
            if match is None:
                raise ValueError(f"gate {name!r} is not inside `blocks.N`")
            gates[int(match.group(1))] = module
    return gates


def expert_usage(model: nn.Module) -> dict[int, torch.Tensor]:
    """`{block_index: LongTensor[n_experts]}`: tokens routed to each expert since the last
    `reset_expert_usage` (each token counts once for each of its k experts). CPU tensors; on
    several ranks the engine sums them (counts are per process)."""
    usage = {}
    for index, gate in _gates(model).items():
        counts = gate.usage
        usage[index] = (
            counts.detach().cpu().clone()
            if counts is not None
            else torch.zeros(gate.n_experts, dtype=torch.long)
        )
    return usage


@contextlib.contextmanager
def eval_noise(model: nn.Module, on: bool = True):
    """Within the block, every gate of `model` draws Eq. 4's noise in eval mode too (as the
    authors' router at test time); put back as it was on leaving."""
    gates = [m for m in model.modules() if isinstance(m, NoisyTopKGate)]
    before = [g.noise_in_eval for g in gates]
    for gate in gates:
        gate.noise_in_eval = on
    try:
        yield
    finally:
        for gate, was in zip(gates, before, strict=True):
            gate.noise_in_eval = was


def reset_expert_usage(model: nn.Module) -> None:
    """Zero the expert-usage counters of every gate in `model`."""
    for gate in _gates(model).values():
        gate.usage = None


def _numel(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def count_parameters(model: nn.Module, task: str = "dfer") -> dict[str, int]:
    """`{"total", "active"}` parameter counts of `model` (Table 3): every parameter, and the ones
    one token of `task` uses at inference: k of the n experts of each gated block (MoAE or
    MoE), the gate's Wg but not its noise weights, one head."""
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
