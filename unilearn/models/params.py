"""Parameter counts of a model (paper Table 3): every parameter, and the ones one token uses at
inference (k of the n experts of each gated block, the gate's Wg but not its noise weights, one
head). `unilearn params` prints them (`unilearn.models.params_cli`); Table 3 counts with them."""

from __future__ import annotations

from torch import nn

from unilearn.models.routing import NoisyTopKGate


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
