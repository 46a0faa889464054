"""The MoAE capacity as the authors' layer (MSA-LMC/S4D `SparseMoEWithCapacity`): the same
dropped token-expert pairs, the same outputs and training gradients from the batched dispatch,
and the test-time capacity counted per group of clips (their test forward holds 16 views), so
that predictions do not depend on the evaluation batch size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_models_moae import random_moae

from unilearn.config import MoAEConfig
from unilearn.data.transforms import normalize
from unilearn.engine import distributed as D
from unilearn.engine.scoring import predict
from unilearn.models import create_model, whole_groups
from unilearn.models.moae import SlotAdapters, dispatch_adapters
from unilearn.models.routing import Routing, capacity_groups


def authors_layer(x: torch.Tensor, routing: Routing, experts, capacity: int):
    """Their capacity loop, written from its description: for each expert i, the tokens of the
    flattened batch whose top k holds i, the first `capacity` of them in token order, each
    adding G(x)_i * expert_i(x). Returns (output, kept set of (token, expert))."""
    out = torch.zeros_like(x)
    dense = routing.dense(len(experts), kept_only=False)
    kept = set()
    for i, expert in enumerate(experts):
        selected = torch.nonzero((routing.indices == i).any(dim=-1)).squeeze(-1)[:capacity]
        kept |= {(int(m), i) for m in selected}
        out = out.index_add(0, selected, expert(x[selected]) * dense[selected, i : i + 1])
    return out, kept


def kept_pairs(routing: Routing) -> set[tuple[int, int]]:
    m, j = torch.nonzero(routing.kept, as_tuple=True)
    return {(int(a), int(b)) for a, b in zip(m, routing.indices[m, j], strict=True)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dropped_pairs_are_those_of_the_authors_capacity_rule(seed):
    torch.manual_seed(seed)
    moae = random_moae(dim=16, n_experts=4, top_k=2, capacity_factor=1.0).train()
    x = torch.randn(3, 20, 16).reshape(-1, 16)
    routing = moae.gate(x)  # noisy (training) routing, drawn once
    _, theirs = authors_layer(x, routing, list(moae.experts), routing.capacity)
    assert len(theirs) < 60 * 2  # this draw drops pairs
    assert kept_pairs(routing) == theirs


def test_batched_dispatch_has_the_authors_outputs_and_training_gradients():
    torch.manual_seed(3)
    moae = random_moae(dim=16, n_experts=4, top_k=2, capacity_factor=1.0).train()
    x = torch.randn(2, 30, 16).reshape(-1, 16).requires_grad_()
    routing = moae.gate(x)
    experts = list(moae.experts)
    params = [x, moae.gate.w_gate.weight, *moae.experts.parameters()]
    ours = dispatch_adapters(x, routing, experts)
    grad_out = torch.randn_like(ours)
    ours_grads = torch.autograd.grad(ours, params, grad_out, retain_graph=True)
    theirs, _ = authors_layer(x, routing, experts, routing.capacity)
    their_grads = torch.autograd.grad(theirs, params, grad_out)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    assert moae.gate.w_gate.weight.requires_grad and ours_grads[1].abs().sum() > 0
    for a, b in zip(ours_grads, their_grads, strict=True):  # x, the gate, every adapter
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def _autograd_adapters(chunk, w, w1, b1, w2):
    """The slot adapters as plain autograd ops (the dispatch before `SlotAdapters`)."""
    hidden = F.gelu(torch.baddbmm(b1.unsqueeze(1), chunk, w1.transpose(1, 2)))
    return torch.bmm(hidden * w.to(hidden.dtype), w2.transpose(1, 2))


@pytest.mark.parametrize("bf16", [False, True])
def test_slot_adapters_backward_is_autograds_with_weight_grads_in_their_layout(bf16):
    torch.manual_seed(5)
    n, s, d, r = 4, 24, 32, 8
    leaves = [torch.randn(n, s, d), torch.rand(n, s, 1), torch.randn(n, r, d) * 0.2,
              torch.randn(n, r) * 0.1, torch.randn(n, d, r) * 0.2]  # fmt: skip
    results = []
    for fn in (SlotAdapters.apply, _autograd_adapters):
        inputs = [t.clone().requires_grad_() for t in leaves]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = fn(*inputs)
        y.float().pow(2).sum().backward()
        results.append((y, [t.grad for t in inputs]))
    (ours, ours_grads), (ref, ref_grads) = results
    assert ours.dtype == ref.dtype == (torch.bfloat16 if bf16 else torch.float32)
    torch.testing.assert_close(ours, ref, atol=0, rtol=0)  # the same forward ops
    tol = 2e-2 if bf16 else 1e-6  # the backward's sums may round apart by a bf16 step
    for a, b in zip(ours_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol)
    for grad, leaf in zip(ours_grads, leaves, strict=True):
        assert grad.dtype == leaf.dtype and grad.is_contiguous()  # AccumulateGrad copies nothing


def test_capacity_groups_split_a_forward_into_consecutive_clips():
    assert capacity_groups(100, None) == [100]
    assert capacity_groups(100, 100) == [100]
    assert capacity_groups(100, 30) == [30, 30, 30, 10]  # the last group may be short
    assert capacity_groups(90, 30) == [30, 30, 30]


@pytest.mark.parametrize("group", [2, 3, 16])
def test_eval_capacity_is_counted_per_group_of_clips_as_separate_forwards(group):
    torch.manual_seed(4)
    moae = random_moae(dim=16, n_experts=4, top_k=2, capacity_factor=1.0).eval()
    x = torch.randn(7, 10, 16)  # 7 clips of 10 tokens
    reference = torch.cat([moae(chunk) for chunk in x.split(group)])  # the authors' forwards
    moae.capacity_group = group
    torch.testing.assert_close(moae(x), reference, atol=1e-6, rtol=0)
    if group < 7:  # grouping really changes which pairs are kept
        moae.capacity_group = None
        assert not torch.allclose(moae(x), reference, atol=1e-4)


def test_training_counts_capacity_per_forward_whatever_the_group():
    torch.manual_seed(5)
    moae = random_moae(dim=16, n_experts=4, top_k=2, capacity_factor=1.0).train()
    x = torch.randn(6, 10, 16)
    torch.manual_seed(0)
    whole = moae(x)
    moae.capacity_group = 2
    torch.manual_seed(0)
    torch.testing.assert_close(moae(x), whole)


def test_test_batches_hold_whole_capacity_groups():
    assert [whole_groups(b, 16) for b in (1, 16, 20, 32, 64)] == [16, 16, 32, 32, 64]
    assert whole_groups(20, None) == 20


def test_model_default_counts_test_capacity_per_16_clips():
    model = create_model("unilearn_tiny_patch16_64")
    assert {m.capacity_group for m in model.modules() if hasattr(m, "capacity_group")} == {16}
    assert create_model("unilearn_tiny_patch16_64", moae=MoAEConfig(capacity_group=None)).blocks[2].moae.capacity_group is None  # fmt: skip


def _trained_like(group: int | None):
    torch.manual_seed(6)
    model = create_model("unilearn_tiny_patch16_64", moae=MoAEConfig(capacity_group=group)).eval()
    with torch.no_grad():  # gates far from their init, so capacity really drops tokens
        for block in model.blocks[2:]:
            block.moae.gate.w_gate.weight.normal_(0, 1.0)
            for p in block.moae.experts.parameters():
                p.normal_(0, 0.3)
        model.head.weight.normal_(0, 1.0)  # logits far from 0: scores show any change
    return model


def _batches(clips: torch.Tensor, batch: int):
    for start in range(0, len(clips), batch):
        x = clips[start : start + batch]
        rows = torch.arange(start, start + len(x))
        yield {"x": x, "row": rows, "y": torch.zeros(len(x), dtype=torch.long)}


def test_predictions_do_not_depend_on_the_evaluation_batch_size_and_are_the_authors():
    # 48 videos x 2 clips at 8x64^2; capacity groups of 16 clips of one view, as their test:
    # their view-major test list (every video's view 0, then view 1), 16 views per forward
    model = _trained_like(16)
    videos = torch.rand(48, 2, 3, 8, 64, 64)
    info = D.DistInfo()
    scores = {}
    for batch in (16, 32, 48):
        _, _, s, _, _ = predict(model, _batches(videos, batch), "dfer", info, None, progress=False)
        scores[batch] = s
    np.testing.assert_array_equal(scores[16], scores[32])
    np.testing.assert_array_equal(scores[16], scores[48])
    views = videos.transpose(0, 1).reshape(96, 3, 8, 64, 64)  # their order: view-major
    model_whole = _trained_like(None)
    with torch.no_grad():
        logits = torch.cat([model_whole(normalize(chunk)) for chunk in views.split(16)])
    theirs = logits.softmax(-1).view(2, 48, -1).mean(0).numpy()
    np.testing.assert_allclose(scores[16], theirs, atol=1e-6, rtol=0)
    assert (scores[16].argmax(1) == theirs.argmax(1)).all()
    # counted over the whole forward instead, the scores change: the grouping matters here
    _, _, whole, _, _ = predict(model_whole, _batches(videos, 48), "dfer", info, None, False)
    assert not np.allclose(whole, scores[16], atol=1e-4)
