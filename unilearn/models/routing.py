"""Routing of a mixture of experts (paper Eq. 4-6 and 8): the noisy top-k gate with its
optional load-balancing loss, expert capacity (per forward, or per group of clips at test time),
and the sparse dispatch that runs each token through its k experts only. The MoAE layer
(`unilearn.models.moae`) and ViT-MoE's FFN experts (the same module) share it.

As in the authors' released code (MSA-LMC/S4D, `finetune/s4d/videomae.py`, MoE type
`moe_adapters`): router Linear layers with a bias, and an expert capacity of int(M k / n) tokens in
token order (`capacity_factor=1.0`); docs/models.md lists where the paper's text differs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn

from unilearn.config import MoAEConfig


def init_linear(linear: nn.Linear) -> None:
    # the authors' fine-tune init, applied last to every Linear of their model (routers included)
    trunc_normal_(linear.weight, std=0.02)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)


@dataclass
class Routing:
    """The gate's decision for M tokens: the k chosen experts, their gate values G(x)_i, and,
    under a capacity, which token-expert pairs the expert keeps (`position` < the capacity of
    the token's capacity group)."""

    indices: torch.Tensor  # int64 [M, k]
    weights: torch.Tensor  # float [M, k], rows sum to 1
    counts: torch.Tensor  # int64 [n_experts], tokens routed to each expert (before capacity)
    position: torch.Tensor | None = None  # int64 [M, k]: rank in its expert's queue (per group)
    capacity: int | None = None  # tokens each expert keeps per (full) group; None = all
    # capacity groups (`capacity_groups`): per token, its group's capacity and the first slot
    # of its group in each expert's slot table; `slots` = slots per expert (sum of capacities)
    limit: torch.Tensor | None = None  # int64 [M, 1]; None = `capacity` for every token
    offset: torch.Tensor | None = None  # int64 [M, 1]; None = 0 (one group)
    slots: int | None = None  # None = `capacity`

    @property
    def kept(self) -> torch.Tensor | None:
        """bool [M, k]: pairs within their expert's capacity (None without a capacity)."""
        if self.capacity is None:
            return None
        return self.position < (self.capacity if self.limit is None else self.limit)

    def kept_weights(self) -> torch.Tensor:
        """Gate values with dropped pairs at zero (what the mixture uses, Eq. 8)."""
        kept = self.kept
        return self.weights if kept is None else self.weights * kept

    def dense(self, n_experts: int, kept_only: bool = True) -> torch.Tensor:
        """G(x) as a dense `[M, n_experts]` matrix: zero outside the top k (and, with
        `kept_only`, for pairs over capacity)."""
        weights = self.kept_weights() if kept_only else self.weights
        dense = weights.new_zeros(weights.shape[0], n_experts)
        return dense.scatter(1, self.indices, weights)


def expert_capacity(n_tokens: int, n_experts: int, top_k: int, factor: float | None) -> int | None:
    """Tokens one expert keeps among the `n_tokens` of a forward (the whole batch, flattened):
    the authors' int(n_tokens * k / n * factor) (`SparseMoEWithCapacity`), at most n_tokens;
    None = unlimited."""
    if factor is None:
        return None
    return min(n_tokens, int((n_tokens * top_k / n_experts) * factor))


def capacity_groups(n_tokens: int, group_tokens: int | None) -> list[int]:
    """Sizes of the consecutive token groups whose capacity is counted apart: one group of the
    whole forward (`group_tokens` None or >= n_tokens), else groups of `group_tokens` and a
    smaller last one (the authors' last test batch)."""
    if group_tokens is None or group_tokens >= n_tokens:
        return [n_tokens]
    full, rest = divmod(n_tokens, group_tokens)
    return [group_tokens] * full + ([rest] if rest else [])


class NoisyTopKGate(nn.Module):
    """Eq. 4-5, noisy top-k gating (Shazeer et al. 2017), as the authors' `NoisyTopkRouter`:
    H(x) = x Wg + bg + StandardNormal() * Softplus(x Wnoise + bnoise)   (Eq. 4),
    G(x) = Softmax(TopK(H(x), k)), entries outside the top k set to -inf   (Eq. 5).

    Noise is drawn in training only, so test-time routing is deterministic, unless
    `noise_in_eval` is set (`eval_noise`): the authors' router draws it at test time too, and the
    authors' per-epoch validation runs with it (docs/models.md). With `capacity_factor`, each expert keeps
    the first `expert_capacity(M, n, k, factor)` of the M tokens of a forward that chose it, in
    token order (batch-major, as the authors' flattened batch), and gives nothing to the rest.

    Also computes the optional load-balancing loss (`last_aux_loss`; coefficient 0 = off, as the
    authors' term is never applied) and counts routed tokens on the device (`usage`). The gate
    runs in fp32 even under autocast: top-k on bf16 logits would tie far too often.

    Its settings are the mixture's `unilearn.config.MoAEConfig` (count, k, loss coefficient,
    noise, capacity factor), which holds their defaults and checks them (1 <= top_k <=
    n_experts, ...).
    """

    def __init__(self, dim: int, moae: MoAEConfig, noise_epsilon: float = 0.0) -> None:
        super().__init__()
        n_experts = moae.n_experts
        self.n_experts = n_experts
        self.top_k = moae.top_k
        self.aux_loss_coef = moae.aux_loss_coef
        self.noisy_gating = moae.noisy_gating
        self.capacity_factor = moae.capacity_factor
        self.noise_epsilon = noise_epsilon  # floor on the noise std (Shazeer's code: 1e-2)
        self.noise_in_eval = False  # Eq. 4's noise in eval mode too (`eval_noise`)
        self.w_gate = nn.Linear(dim, n_experts)
        self.w_noise = nn.Linear(dim, n_experts)
        self.last_aux_loss: torch.Tensor | None = None
        # A plain attribute, not a buffer: DDP would broadcast a buffer from rank 0 every step.
        self.usage: torch.Tensor | None = None
        self.init_own_weights()

    def init_own_weights(self) -> None:
        init_linear(self.w_gate)
        init_linear(self.w_noise)

    def noisy_logits(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Eq. 4: H(x). Returns (clean logits, H(x), noise std or None when noise is off)."""
        if not (self.noisy_gating and (self.training or self.noise_in_eval)):
            clean = F.linear(x, self.w_gate.weight.float(), self.w_gate.bias.float())
            return clean, clean, None
        # both linears in one matmul: x is read once (forward and backward)
        weight = torch.cat([self.w_gate.weight, self.w_noise.weight]).float()
        both = F.linear(x, weight, torch.cat([self.w_gate.bias, self.w_noise.bias]).float())
        clean, raw_noise = both.split(self.n_experts, dim=1)
        noise_std = F.softplus(raw_noise) + self.noise_epsilon
        return clean, clean + torch.randn_like(clean) * noise_std, noise_std

    def forward(self, x: torch.Tensor, group_tokens: int | None = None) -> Routing:
        """Route M tokens `[M, D]`: Eq. 4-5, then the capacity, counted over the whole forward
        or, with `group_tokens`, over each group of that many consecutive tokens."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            clean, logits, noise_std = self.noisy_logits(x)
            top_logits, top_indices = logits.topk(min(self.top_k + 1, self.n_experts), dim=1)
            indices = top_indices[:, : self.top_k]
            # softmax over the k kept logits == softmax over all n with -inf outside the top k
            weights = top_logits[:, : self.top_k].softmax(dim=1)
            # one-hot of the (distinct) chosen experts: counts and queue positions, sync-free
            chosen = torch.zeros_like(clean, dtype=torch.long).scatter_(1, indices, 1)
            counts = chosen.sum(0)
            routing = self._capacity(Routing(indices, weights, counts), chosen, group_tokens)
            self.last_aux_loss = self._load_balancing_loss(
                routing, clean, logits, noise_std, top_logits
            )
        with torch.no_grad():
            self.usage = (
                counts.clone() if self.usage is None else self.usage + counts.to(self.usage.device)
            )
        return routing

    def _capacity(
        self, routing: Routing, chosen: torch.Tensor, group_tokens: int | None
    ) -> Routing:
        """Each expert's queue position of every pair, counted in token order within the
        token's capacity group, and the capacity of that group (all on the device)."""
        m, n = chosen.shape
        sizes = capacity_groups(m, group_tokens)
        caps = [expert_capacity(g, n, self.top_k, self.capacity_factor) for g in sizes]
        if caps[0] is None:
            return routing
        routing.capacity = caps[0]
        if len(sizes) == 1:
            routing.position = (chosen.cumsum(0) - 1).gather(1, routing.indices)
            return routing
        g = sizes[0]
        padded = F.pad(chosen, (0, 0, 0, len(sizes) * g - m))  # the last group may be short
        queue = padded.view(len(sizes), g, n).cumsum(1).view(-1, n)[:m] - 1
        routing.position = queue.gather(1, routing.indices)
        group = torch.div(torch.arange(m, device=chosen.device), g, rounding_mode="floor")
        last = group[:, None] == len(sizes) - 1
        routing.limit = torch.where(last, caps[-1], caps[0])
        routing.offset = group[:, None] * caps[0]  # every group before the last is full
        routing.slots = sum(caps)
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
        importance = routing.dense(self.n_experts, kept_only=False).sum(0)
        if noise_std is not None and self.top_k < self.n_experts:
            std = noise_std.clamp_min(1e-9)  # softplus may underflow without noise_epsilon
            load = _prob_in_top_k(clean, noisy, std, top_logits, self.top_k).sum(0)
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


# -- dispatch ------------------------------------------------------------------------------------
def slot_table(routing: Routing, n_experts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Under a capacity: `(rows [n, S], gate values [n, S, 1])`, expert e's S slots (the sum of
    its capacities over the capacity groups) filled in token order. A slot left idle (its
    expert got fewer tokens than its capacity) points at row 0 with gate value 0: it adds an
    exact 0. Shapes are fixed by the token count, so nothing waits for the device."""
    m, k = routing.indices.shape
    s = routing.capacity if routing.slots is None else routing.slots
    kept = routing.kept.reshape(-1)
    base = 0 if routing.offset is None else routing.offset
    # kept pair -> its slot e * S + group offset + position; a dropped pair -> a private slot
    # past the end, cut off below
    pair = torch.arange(m * k, device=kept.device)
    slot = (routing.indices * s + base + routing.position).reshape(-1)
    slot = torch.where(kept, slot, n_experts * s + pair)
    size = n_experts * s + m * k
    rows = torch.zeros(size, dtype=torch.long, device=kept.device)
    rows = rows.scatter(0, slot, torch.div(pair, k, rounding_mode="floor"))
    weights = routing.weights.new_zeros(size).scatter(0, slot, routing.weights.reshape(-1))
    return rows[: n_experts * s].view(n_experts, s), weights[: n_experts * s].view(n_experts, s, 1)


def expert_slices(
    routing: Routing, n_experts: int
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Per expert: (expert index, the rows of the tokens it runs on, their gate values `[R, 1]`).

    With a capacity, the expert's fixed slots (`slot_table`). Without one the pairs are sorted
    by expert and split by count, which costs one host sync per layer to read the counts.
    """
    if routing.capacity is not None:
        rows, weights = slot_table(routing, n_experts)
        yield from zip(range(n_experts), rows, weights)
        return
    k = routing.indices.shape[1]
    order = torch.argsort(routing.indices.reshape(-1), stable=True)
    tokens = torch.div(order, k, rounding_mode="floor")
    weights = routing.weights.reshape(-1)[order, None]
    counts = routing.counts.tolist()
    yield from zip(range(n_experts), tokens.split(counts), weights.split(counts))


def dispatch(
    x: torch.Tensor,
    routing: Routing,
    experts: Sequence[Callable[[torch.Tensor], torch.Tensor]],
) -> torch.Tensor:
    """Sparse mixture: out[m] = sum_j kept[m, j] weights[m, j] * experts[indices[m, j]](x[m]).

    Each expert runs once on exactly its rows (`expert_slices`) and the weighted outputs are
    added back with `index_add`: the work is k/n of a dense mixture (ViT-MoE's FFN experts,
    whose matmuls dwarf the per-expert loop).
    """
    out = None
    # An expert with no tokens still runs (on 0 rows, ~free) so that every parameter gets a
    # gradient each step: DDP and optimizers then see the same parameter set every step.
    for e, rows, w in expert_slices(routing, len(experts)):
        y = (experts[e](x.index_select(0, rows)) * w).to(x.dtype)
        out = x.new_zeros(x.shape[0], y.shape[1]) if out is None else out
        out.index_add_(0, rows, y)
    return out


def dense_mixture(
    x: torch.Tensor, gates: torch.Tensor, experts: Sequence[Callable[[torch.Tensor], torch.Tensor]]
) -> torch.Tensor:
    """Dense reference of Eq. 8, sum_i G(x)_i E_i(x) over ALL n experts (tests and the
    benchmark only: n/k times the work of `dispatch`)."""
    return sum(gates[:, i : i + 1] * expert(x) for i, expert in enumerate(experts))


def whole_groups(batch_size: int, capacity_group: int | None) -> int:
    """`batch_size` rounded up to whole capacity groups, so that no group straddles two
    test batches and predictions do not depend on the batch size."""
    if capacity_group is None:
        return batch_size
    return -(-batch_size // capacity_group) * capacity_group


class Mixture(nn.Module):
    """A gate and its experts (MoAE's adapters, ViT-MoE's FFNs): the tokens of a `[..., D]`
    input routed (Eq. 4-5, capacity) and mixed by `combine` (Eq. 8). In eval mode the capacity
    is counted per `moae.capacity_group` clips (the authors' test forward holds 16 views), in
    training over the whole forward (theirs). A subclass builds one expert (`expert`, given
    `expert_args`) and mixes them (`combine`)."""

    def __init__(self, dim: int, moae: MoAEConfig, **expert_args: Any) -> None:
        super().__init__()
        self.n_experts = moae.n_experts
        self.capacity_group = moae.capacity_group
        self.gate = NoisyTopKGate(dim, moae)
        # built after the gate (the init's RNG order)
        self.experts = nn.ModuleList(
            self.expert(dim, moae, **expert_args) for _ in range(moae.n_experts)
        )

    def expert(self, dim: int, moae: MoAEConfig, **expert_args: Any) -> nn.Module:
        raise NotImplementedError

    def combine(self, x: torch.Tensor, routing: Routing) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        group = self.capacity_group
        tokens = None if self.training or group is None or len(shape) < 3 else group * shape[-2]
        return self.combine(x, self.gate(x, tokens)).reshape(shape)
