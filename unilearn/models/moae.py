"""Mixture of Adapter Experts (SPEC 1.3, paper Eq. 3-12): bottleneck adapters with an inner
residual, Shazeer et al.'s noisy top-k gate with its load-balancing loss, sparse dispatch (each
token runs only its k experts), the MoAE block (MoAE parallel to the FFN), where the MoAE blocks
sit, and expert-usage counting (Figure 4a).

Equation numbers follow the paper as SPEC 1.3 lays it out: Eq. 3-6 the MoAE layer, Eq. 7 the
adapter, Eq. 8-11 the gate (noisy logits, TopK, softmax), Eq. 12 the mixture.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from unilearn.models.vit import Block

POSITIONS = ("later", "early", "middle", "alternate")


def moae_block_indices(depth: int, position: str | Sequence[int]) -> tuple[int, ...]:
    """Which blocks carry a MoAE (Table 5 right), for a ViT of `depth` blocks.

    `later` = second half (blocks 6-11 of ViT-B, the paper's default), `early` = first half,
    `middle` = the central half (3-8), `alternate` = every other block ending with the last
    (1, 3, ..., 11); or an explicit list of block indices.
    """
    half = depth // 2
    if isinstance(position, str):
        if position == "later":
            indices = range(depth - half, depth)
        elif position == "early":
            indices = range(0, half)
        elif position == "middle":
            start = (depth - half) // 2
            indices = range(start, start + half)
        elif position == "alternate":
            indices = range(depth - 1, -1, -2)
        else:
            raise ValueError(
                f"moae_position {position!r}: expected one of {POSITIONS} or a list of block indices"
            )
        return tuple(sorted(indices))
    indices = tuple(int(i) for i in position)
    bad = [i for i in indices if not 0 <= i < depth]
    if bad or len(set(indices)) != len(indices) or not indices:
        raise ValueError(
            f"moae_position {list(position)}: expected distinct block indices in [0, {depth - 1}]"
        )
    return tuple(sorted(indices))


class Adapter(nn.Module):
    """Eq. 7: Adapter_i(x) = x + W2_i GELU(W1_i x + b1_i) + b2_i (bottleneck r, inner residual).

    W2 starts at zero (as AdaptFormer / LoRA), so a fresh adapter is the identity and adding
    MoAE layers to a pre-trained encoder starts from the encoder's own features plus LN(x')."""

    def __init__(self, dim: int, bottleneck: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, bottleneck)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(bottleneck, dim)
        self.init_own_weights()

    def init_own_weights(self) -> None:
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The bottleneck activation GELU(W1 x + b1)."""
        return self.act(self.fc1(x))

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """The adapter without its inner residual: W2 GELU(W1 x + b1) + b2."""
        return self.fc2(self.hidden(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.delta(x)


@dataclass
class Routing:
    """The gate's decision for M tokens: the k chosen experts and their gate values G(x)_i."""

    indices: torch.Tensor  # int64 [M, k]
    weights: torch.Tensor  # float [M, k], rows sum to 1
    counts: torch.Tensor  # int64 [n_experts], tokens routed to each expert

    def dense(self, n_experts: int) -> torch.Tensor:
        """G(x) as a dense `[M, n_experts]` matrix: zero outside the top k."""
        dense = self.weights.new_zeros(self.weights.shape[0], n_experts)
        return dense.scatter(1, self.indices, self.weights)


class NoisyTopKGate(nn.Module):
    """Eq. 8-11, noisy top-k gating (Shazeer et al. 2017):
    H(x) = x Wg + StandardNormal() * Softplus(x Wnoise)   (noise in training only),
    G(x) = Softmax(TopK(H(x), k)), entries outside the top k set to -inf before the softmax.

    Also computes the load-balancing loss (`last_aux_loss`) and counts routed tokens (`usage`).
    The gate runs in fp32 even under autocast: top-k on bf16 logits would tie far too often.
    """

    def __init__(
        self,
        dim: int,
        n_experts: int,
        top_k: int,
        aux_loss_coef: float = 0.01,
        noisy_gating: bool = True,
        noise_epsilon: float = 1e-2,
    ) -> None:
        super().__init__()
        if not 1 <= top_k <= n_experts:
            raise ValueError(f"top_k must be in [1, n_experts={n_experts}], got {top_k}")
        if aux_loss_coef < 0:
            raise ValueError(f"aux_loss_coef must be >= 0, got {aux_loss_coef}")
        self.n_experts = n_experts
        self.top_k = top_k
        self.aux_loss_coef = aux_loss_coef
        self.noisy_gating = noisy_gating
        self.noise_epsilon = noise_epsilon  # Shazeer's floor on the noise std
        self.w_gate = nn.Linear(dim, n_experts, bias=False)
        self.w_noise = nn.Linear(dim, n_experts, bias=False)
        self.last_aux_loss: torch.Tensor | None = None
        # A plain attribute, not a buffer: DDP would broadcast a buffer from rank 0 every step.
        self.usage: torch.Tensor | None = None
        self.init_own_weights()

    def init_own_weights(self) -> None:
        # Shazeer et al.: zero init gives "no signal and some noise" (uniform routing at start).
        nn.init.zeros_(self.w_gate.weight)
        nn.init.zeros_(self.w_noise.weight)

    def noisy_logits(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Eq. 8: H(x). Returns (clean logits x Wg, H(x), noise std or None outside training)."""
        if not (self.training and self.noisy_gating):
            clean = F.linear(x, self.w_gate.weight.float())
            return clean, clean, None
        # x Wg and x Wnoise in one matmul: x is read once (forward and backward)
        both = F.linear(x, torch.cat([self.w_gate.weight, self.w_noise.weight]).float())
        clean, raw_noise = both.split(self.n_experts, dim=1)
        noise_std = F.softplus(raw_noise) + self.noise_epsilon
        return clean, clean + torch.randn_like(clean) * noise_std, noise_std

    def forward(self, x: torch.Tensor) -> Routing:
        """Route M tokens `[M, D]`: Eq. 9-11 (TopK, -inf elsewhere, softmax)."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            clean, logits, noise_std = self.noisy_logits(x)
            top_logits, top_indices = logits.topk(min(self.top_k + 1, self.n_experts), dim=1)
            indices = top_indices[:, : self.top_k]
            # softmax over the k kept logits == softmax over all n with -inf outside the top k
            weights = top_logits[:, : self.top_k].softmax(dim=1)
            counts = torch.bincount(indices.reshape(-1), minlength=self.n_experts)
            routing = Routing(indices, weights, counts)
            self.last_aux_loss = self._load_balancing_loss(
                routing, clean, logits, noise_std, top_logits
            )
        with torch.no_grad():
            self.usage = (
                counts.clone() if self.usage is None else self.usage + counts.to(self.usage.device)
            )
        return routing

    def _load_balancing_loss(
        self,
        routing: Routing,
        clean: torch.Tensor,
        noisy: torch.Tensor,
        noise_std: torch.Tensor | None,
        top_logits: torch.Tensor,
    ) -> torch.Tensor:
        """Shazeer et al. Eq. 6-10: coef * (CV(Importance)^2 + CV(Load)^2); differentiable in
        both terms while training (Load is the smooth P(x, i) estimator)."""
        if self.aux_loss_coef == 0:
            return clean.new_zeros(())
        importance = routing.dense(self.n_experts).sum(0)
        if noise_std is not None and self.top_k < self.n_experts:
            load = _prob_in_top_k(clean, noisy, noise_std, top_logits, self.top_k).sum(0)
        else:  # no noise: the load is the (non-differentiable) token count
            load = routing.counts.to(clean.dtype)
        return self.aux_loss_coef * (cv_squared(importance) + cv_squared(load))


def cv_squared(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Squared coefficient of variation (Shazeer et al.); 0 for a single expert."""
    if x.numel() <= 1:
        return x.new_zeros(())
    return x.var() / (x.mean() ** 2 + eps)


def _prob_in_top_k(
    clean: torch.Tensor,
    noisy: torch.Tensor,
    noise_std: torch.Tensor,
    top_logits: torch.Tensor,
    k: int,
) -> torch.Tensor:
    """P(x, i) of Shazeer et al. Eq. 9: the probability that expert i stays in the top k when
    only its own noise is re-drawn; `top_logits` holds the top k+1 noisy logits."""
    threshold_if_in = top_logits[:, k : k + 1]  # (k+1)-th largest: what i must beat if it is in
    threshold_if_out = top_logits[:, k - 1 : k]  # k-th largest: what i must beat if it is out
    is_in = noisy > threshold_if_in
    prob_if_in = torch.special.ndtr((clean - threshold_if_in) / noise_std)
    prob_if_out = torch.special.ndtr((clean - threshold_if_out) / noise_std)
    return torch.where(is_in, prob_if_in, prob_if_out)


def _by_expert(routing: Routing) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """The M*k token-expert pairs sorted by expert (stable): (token of each pair, its gate value
    `[M*k, 1]`, pairs per expert). One host sync per layer to read the counts."""
    k = routing.indices.shape[1]
    order = torch.argsort(routing.indices.reshape(-1), stable=True)
    tokens = torch.div(order, k, rounding_mode="floor")
    return tokens, routing.weights.reshape(-1)[order, None], routing.counts.tolist()


def dispatch(
    x: torch.Tensor,
    routing: Routing,
    experts: Sequence[Callable[[torch.Tensor], torch.Tensor]],
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sparse dispatch: residual[m] + sum_j weights[m, j] * experts[indices[m, j]](x[m]).

    Token-expert pairs are sorted by expert and gathered once, each expert runs once on exactly
    its contiguous slice, and the weighted outputs are scattered back with one `index_add`: the
    work is k/n of a dense mixture. (torch has no CPU grouped matmul; a padded `bmm` over the
    experts measured no faster at ViT-B shapes.)
    """
    tokens, weights, counts = _by_expert(routing)
    chunks = x.index_select(0, tokens).split(counts)
    # An expert with no tokens still runs (on 0 rows, ~free) so that every parameter gets a
    # gradient each step: DDP and optimizers then see the same parameter set every step.
    y = torch.cat([expert(chunk) for expert, chunk in zip(experts, chunks)])
    y = (y * weights).to(x.dtype)
    base = x.new_zeros(x.shape[0], y.shape[1]) if residual is None else residual
    return base.index_add(0, tokens, y)


def dispatch_adapters(
    x: torch.Tensor, routing: Routing, experts: Sequence[Adapter]
) -> torch.Tensor:
    """`dispatch` of adapter deltas with x as residual, computed as x + G(x) B2 + sum_j W2_j (g_j h_j):
    the same sum, since g (W2 h + b2) = W2 (g h) + g b2, but the gate values scale the r-wide
    bottleneck instead of the d-wide output, the biases come from one [M, n] x [n, d] matmul and
    each expert adds its rows in place (no concatenation). At ViT-B shapes the layer is ~7%
    faster than `dispatch`; its adapter matmuls alone are ~80% of its time."""
    tokens, weights, counts = _by_expert(routing)
    biases = torch.stack([expert.fc2.bias for expert in experts])
    # not addmm: autocast would round the residual stream itself to bf16
    out = x + routing.dense(len(experts)).to(biases.dtype) @ biases
    pieces = zip(
        experts,
        x.index_select(0, tokens).split(counts),
        weights.split(counts),
        tokens.split(counts),
    )
    # every expert runs, on 0 rows if need be: each parameter gets a gradient every step (DDP)
    for expert, chunk, w, rows in pieces:
        y = F.linear(expert.hidden(chunk) * w.to(chunk.dtype), expert.fc2.weight)
        out.index_add_(0, rows, y.to(out.dtype))
    return out


def dense_mixture(
    x: torch.Tensor, gates: torch.Tensor, experts: Sequence[Callable[[torch.Tensor], torch.Tensor]]
) -> torch.Tensor:
    """Dense reference of Eq. 12, sum_i G(x)_i E_i(x) over ALL n experts (tests and the
    benchmark only: n/k times the work of `dispatch`)."""
    return sum(gates[:, i : i + 1] * expert(x) for i, expert in enumerate(experts))


class MoAE(nn.Module):
    """Eq. 12: MoAE(x) = sum_i G(x)_i Adapter_i(x), computed sparsely.

    With the inner residual, sum_i G_i (x + delta_i(x)) = (sum_i G_i) x + sum_i G_i delta_i(x)
    = x + sum_i G_i delta_i(x), since the softmax gates of a token sum to exactly 1 (so that
    term has no gradient either): only the k chosen deltas run per token.
    """

    def __init__(
        self,
        dim: int,
        n_experts: int = 8,
        top_k: int = 2,
        bottleneck: int | None = None,
        aux_loss_coef: float = 0.01,
        noisy_gating: bool = True,
    ) -> None:
        super().__init__()
        self.n_experts = n_experts
        self.gate = NoisyTopKGate(dim, n_experts, top_k, aux_loss_coef, noisy_gating)
        self.experts = nn.ModuleList(Adapter(dim, bottleneck or dim // 4) for _ in range(n_experts))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        return dispatch_adapters(x, self.gate(x), self.experts).reshape(shape)

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        """The same output through `dense_mixture` (all n adapters on every token)."""
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        gates = self.gate(x).dense(self.n_experts).to(x.dtype)
        return dense_mixture(x, gates, list(self.experts)).reshape(shape)


class MoAEBlock(Block):
    """Eq. 3-6, the MoAE layer: x' = x + MHSA(LN(x)); x_g = FFN(LN(x')); x_s = MoAE(LN(x'));
    out = x' + x_g + x_s. The MoAE runs beside the FFN on the same LN(x'); it replaces nothing,
    so every pre-trained ViT weight keeps its key. Drop path covers the sub-layer as a whole."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        n_experts: int = 8,
        top_k: int = 2,
        adapter_ratio: float = 0.25,
        aux_loss_coef: float = 0.01,
        noisy_gating: bool = True,
    ) -> None:
        super().__init__(dim, num_heads, mlp_ratio, qkv_bias, drop, attn_drop, drop_path)
        self.moae = MoAE(
            dim, n_experts, top_k, int(dim * adapter_ratio), aux_loss_coef, noisy_gating
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        h = self.norm2(x)
        return x + self.drop_path(self.mlp(h) + self.moae(h))


# -- expert usage (Figure 4a) ------------------------------------------------------------------
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


def reset_expert_usage(model: nn.Module) -> None:
    """Zero the expert-usage counters of every gate in `model`."""
    for gate in _gates(model).values():
        gate.usage = None
