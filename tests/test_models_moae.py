"""MoAE (paper Eq. 4-12): sparse dispatch equals the dense Eq. 8 with and without a capacity,
the capacity keeps tokens in token order, the noisy top-k gate (with bias, as the authors'), the
load-balancing loss, where MoAE layers sit, and expert-usage counting."""

from __future__ import annotations

import pytest
import torch

from unilearn.catalogue import moae_block_indices
from unilearn.config import MoAEConfig, typed_kwargs
from unilearn.models import create_model, expert_usage, reset_expert_usage
from unilearn.models.moae import Adapter, MoAE, MoAEBlock
from unilearn.models.routing import NoisyTopKGate, dense_mixture, expert_capacity


# The config's defaults (the modules take the mixture's settings as one required value).
def make_gate(dim: int, **settings) -> NoisyTopKGate:
    return NoisyTopKGate(dim, MoAEConfig(**settings))


def random_moae(
    dim: int = 32,
    n_experts: int = 8,
    top_k: int = 2,
    capacity_factor: float | None = None,
    expert_residual: bool = False,
    aux_loss_coef: float = 0.0,
) -> MoAE:
    """A MoAE whose gate and adapters are far from their init, so routing is non-trivial."""
    moae = MoAE(dim, MoAEConfig(
        n_experts=n_experts, top_k=top_k, aux_loss_coef=aux_loss_coef, noisy_gating=True,
        capacity_factor=capacity_factor, expert_residual=expert_residual, capacity_group=None,
    ))  # fmt: skip
    with torch.no_grad():
        for p in moae.parameters():
            p.normal_(0, 0.5)
    return moae


@pytest.mark.parametrize("capacity_factor", [None, 1.0, 0.5])
@pytest.mark.parametrize("expert_residual", [False, True])
def test_sparse_moae_equals_dense(capacity_factor, expert_residual):
    moae = random_moae(capacity_factor=capacity_factor, expert_residual=expert_residual).eval()
    x = torch.randn(3, 50, 32)
    sparse = moae(x)
    # Eq. 8 densely, all n adapters on every token: sum_i G(x)_i Adapter_i(x), G zero for
    # dropped pairs; through the reference `dense_mixture` and written out literally
    gates = moae.gate(x.reshape(-1, 32)).dense(8)
    dense = dense_mixture(x.reshape(-1, 32), gates, list(moae.experts)).reshape(x.shape)
    literal = sum(gates[:, i : i + 1] * moae.experts[i](x.reshape(-1, 32)) for i in range(8))
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=0)
    torch.testing.assert_close(sparse.reshape(-1, 32), literal, atol=1e-5, rtol=0)


def test_adapter_residual_is_one_key_away():
    plain, text = Adapter(16, 0.25, residual=False), Adapter(16, 0.25, residual=True)
    text.load_state_dict(plain.state_dict())
    x = torch.randn(5, 16)
    w2_h = plain.fc2(torch.nn.functional.gelu(plain.fc1(x)))
    torch.testing.assert_close(plain(x), w2_h)  # the authors' Mlp(skip_connect=False)
    torch.testing.assert_close(text(x), x + w2_h)  # Eq. 7 as written


def test_capacity_is_the_authors_int_of_tokens_times_k_over_n():
    # per forward, over the flattened batch: ViT-B video batch of 2 -> 1600 tokens, 8 experts, k 2
    assert expert_capacity(1600, 8, 2, 1.0) == 400
    assert expert_capacity(10, 4, 1, 1.0) == 2  # int(2.5)
    assert expert_capacity(10, 4, 2, 1.5) == 7  # int(7.5)
    assert expert_capacity(3, 2, 2, 4.0) == 3  # never more than the tokens there are
    assert expert_capacity(10, 4, 2, None) is None


def test_capacity_drops_tokens_in_token_order():
    torch.manual_seed(0)
    moae = random_moae(dim=16, n_experts=4, top_k=2, capacity_factor=1.0).eval()
    with torch.no_grad():  # every token picks experts 0 and 1
        moae.gate.w_gate.weight.zero_()
        moae.gate.w_gate.bias.copy_(torch.tensor([2.0, 1.0, 0.0, -1.0]))
    x = torch.randn(2, 6, 16)  # 12 tokens: capacity int(12 * 2 / 4) = 6 per expert
    routing = moae.gate(x.reshape(-1, 16))
    assert routing.capacity == 6
    assert routing.kept.tolist() == [[True, True]] * 6 + [[False, False]] * 6
    out = moae(x).reshape(-1, 16)
    flat = x.reshape(-1, 16)
    g = routing.weights
    kept = g[:6, :1] * moae.experts[0](flat[:6]) + g[:6, 1:] * moae.experts[1](flat[:6])
    torch.testing.assert_close(out[:6], kept)  # the first tokens (sample 0) are served
    assert torch.equal(out[6:], torch.zeros(6, 16))  # later ones get nothing, at test time too


def test_capacity_keeps_the_first_tokens_of_each_expert_queue():
    # any routing: expert i serves the first C tokens (flattened batch order) that chose it,
    # whether it was their first or second choice
    torch.manual_seed(2)
    moae = random_moae(dim=16, n_experts=4, top_k=2, capacity_factor=1.0).eval()
    x = torch.randn(3, 10, 16)
    flat = x.reshape(-1, 16)
    routing = moae.gate(flat)
    c = routing.capacity
    assert c == 15
    expected = torch.zeros_like(flat)
    for i, expert in enumerate(moae.experts):
        queue = [m for m in range(30) if i in routing.indices[m].tolist()][:c]
        for m in queue:
            g = routing.weights[m, routing.indices[m].tolist().index(i)]
            expected[m] += g * expert(flat[m : m + 1])[0]
    assert routing.kept.sum() < 60  # some pairs really are dropped in this draw
    torch.testing.assert_close(moae(x).reshape(-1, 16), expected, atol=1e-5, rtol=0)


def test_capacity_dispatch_never_reads_the_device(monkeypatch):
    moae = random_moae(capacity_factor=1.0).train()

    def refuse(self, *args, **kwargs):
        raise AssertionError("host sync on the MoAE hot path")

    for name in ("tolist", "item", "nonzero", "__bool__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    moae(torch.randn(2, 30, 32)).sum().backward()
    model = create_model("unilearn_tiny_patch16_64").train()  # the whole model, both modalities
    model(torch.randn(2, 3, 8, 64, 64)).sum().backward()
    model(torch.randn(2, 3, 2, 64, 64), task="sfer").sum().backward()


def test_sparse_dispatch_runs_each_token_through_k_experts_only():
    moae = random_moae(n_experts=8, top_k=2).eval()
    seen = []
    for expert in moae.experts:
        expert.fc1.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[0]))
    moae(torch.randn(4, 25, 32))
    assert sum(seen) == 2 * 100  # k * tokens, never n * tokens
    moae.gate.capacity_factor = 1.0
    calls = []
    real = torch.baddbmm
    with pytest.MonkeyPatch.context() as patch:  # under capacity the experts run as one bmm
        patch.setattr(torch, "baddbmm", lambda *a, **k: calls.append(a[1].shape) or real(*a, **k))
        moae(torch.randn(4, 25, 32))
    assert calls == [(8, 25, 32)]  # a fixed int(100 * 2 / 8) slots per expert: k * tokens


def test_router_has_biases_and_the_authors_init():
    gate = make_gate(768)  # the config's defaults are the authors' scripts'
    assert (gate.n_experts, gate.top_k) == (8, 2)
    for linear in (gate.w_gate, gate.w_noise):
        assert linear.bias is not None and torch.equal(linear.bias, torch.zeros(8))
        assert abs(linear.weight.std().item() - 0.02) < 0.002  # trunc-normal, std .02
    assert gate.aux_loss_coef == 0.0 and gate.capacity_factor == 1.0


def test_gate_rows_sum_to_one_with_exactly_k_nonzeros():
    gate = make_gate(16, n_experts=6, top_k=3, capacity_factor=None)
    with torch.no_grad():
        gate.w_gate.weight.normal_()
        gate.w_noise.weight.normal_()
    for mode in (gate.train, gate.eval):
        mode()
        dense = gate(torch.randn(200, 16)).dense(6)
        torch.testing.assert_close(dense.sum(1), torch.ones(200))
        assert ((dense > 0).sum(1) == 3).all()


def test_gate_softmax_is_over_top_k_with_minus_infinity_elsewhere():
    gate = make_gate(8, n_experts=5, top_k=2, capacity_factor=None).eval()
    with torch.no_grad():
        gate.w_gate.weight.normal_()
        gate.w_gate.bias.normal_()
    x = torch.randn(20, 8)
    logits = x @ gate.w_gate.weight.T + gate.w_gate.bias
    kth = logits.topk(2, dim=1).values[:, -1:]
    expected = logits.masked_fill(logits < kth, float("-inf")).softmax(1)
    torch.testing.assert_close(gate(x).dense(5), expected)


def test_gate_noise_only_in_train_mode():
    # test-time routing is deterministic (the authors' router also draws noise at test time)
    gate = make_gate(16)
    x = torch.randn(64, 16)
    gate.eval()
    a, b = gate(x), gate(x)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.weights, b.weights)
    gate.train()
    c, d = gate(x), gate(x)
    assert not torch.equal(c.weights, d.weights)
    gate.noisy_gating = False
    e, f = gate(x), gate(x)
    assert torch.equal(e.weights, f.weights)


def test_aux_loss_is_differentiable():
    moae = random_moae(aux_loss_coef=0.01).train()
    out = moae(torch.randn(2, 40, 32))
    aux = moae.gate.last_aux_loss
    assert aux.ndim == 0 and aux.item() > 0
    (out.sum() * 0 + aux).backward()
    # both the importance (via Wg) and the smooth load estimate (via Wnoise) carry gradient
    assert moae.gate.w_gate.weight.grad.abs().sum() > 0
    assert moae.gate.w_noise.weight.grad.abs().sum() > 0


def test_aux_loss_coefficient_scales_and_may_be_zero():
    model = create_model("unilearn_tiny_patch16_64", moae=MoAEConfig(aux_loss_coef=0.0))
    model(torch.randn(2, 3, 8, 64, 64))
    assert model.aux_loss().item() == 0.0
    torch.manual_seed(0)
    a = create_model("unilearn_tiny_patch16_64", moae=MoAEConfig(aux_loss_coef=0.01))
    torch.manual_seed(0)
    b = create_model("unilearn_tiny_patch16_64", moae=MoAEConfig(aux_loss_coef=0.02))
    x = torch.randn(2, 3, 8, 64, 64)
    torch.manual_seed(3)
    a(x)
    torch.manual_seed(3)
    b(x)
    torch.testing.assert_close(b.aux_loss(), 2 * a.aux_loss())


@pytest.mark.parametrize(
    ("position", "expected"),
    [
        ("later", (6, 7, 8, 9, 10, 11)),
        ("early", (0, 1, 2, 3, 4, 5)),
        ("middle", (3, 4, 5, 6, 7, 8)),
        ("alternate", (1, 3, 5, 7, 9, 11)),
        ([0, 11, 5], (0, 5, 11)),
    ],
)
def test_moae_positions(position, expected):
    assert moae_block_indices(12, position) == expected


def test_moae_positions_reject_nonsense():
    for bad in ("late", [12], [1, 1], []):
        with pytest.raises(ValueError, match="moae_position"):
            moae_block_indices(12, bad)


def test_unilearn_model_puts_moae_in_later_blocks_beside_the_ffn():
    model = create_model("unilearn_tiny_patch16_64")
    kinds = [type(b).__name__ for b in model.blocks]
    assert kinds == ["Block", "Block", "MoAEBlock", "MoAEBlock"]
    assert hasattr(model.blocks[2], "mlp")  # the FFN is kept: MoAE is parallel, not a replacement


def test_moae_block_is_eq_9_to_12():
    block = MoAEBlock(dim=32, num_heads=4, moae=MoAEConfig(n_experts=4)).eval()
    with torch.no_grad():
        for p in block.moae.parameters():
            p.normal_(0, 0.3)
    x = torch.randn(2, 10, 32)
    x_prime = x + block.attn(block.norm1(x))  # Eq. 9
    h = block.norm2(x_prime)
    x_g = block.mlp(h)  # Eq. 10
    x_s = block.moae(h)  # Eq. 11
    torch.testing.assert_close(block(x), x_prime + x_g + x_s)  # Eq. 12


def test_expert_usage_counts_routed_tokens_and_resets():
    model = create_model("unilearn_tiny_patch16_64", moae=MoAEConfig(n_experts=4, top_k=2)).eval()
    assert set(expert_usage(model)) == {2, 3}
    model(torch.randn(2, 3, 8, 64, 64))  # 2 x 64 tokens
    model(torch.randn(1, 3, 2, 64, 64))  # 16 image tokens
    usage = expert_usage(model)
    for counts in usage.values():
        assert counts.dtype == torch.long and counts.shape == (4,)
        assert counts.sum().item() == 2 * (128 + 16)
    reset_expert_usage(model)
    assert all(c.sum().item() == 0 for c in expert_usage(model).values())
    assert expert_usage(create_model("vit_tiny_patch16_64")) == {}


def test_model_defaults_are_the_config_defaults():
    moae = MoAEConfig()
    for name in ("unilearn_tiny_patch16_64", "vit_moe_tiny_patch16_64"):
        with torch.device("meta"):
            model = create_model(name)
        gates = [m for m in model.modules() if isinstance(m, NoisyTopKGate)]
        assert model.moae_blocks == moae_block_indices(4, moae.position)
        assert len(gates) == len(model.moae_blocks)
        for gate in gates:
            assert (gate.n_experts, gate.top_k, gate.aux_loss_coef, gate.noisy_gating,
                    gate.capacity_factor) == (moae.n_experts, moae.top_k, moae.aux_loss_coef,
                                              moae.noisy_gating, moae.capacity_factor)  # fmt: skip


def test_create_model_checks_the_moae_settings_by_the_config_rules():
    # the mixture is one MoAEConfig, checked by the config's rules, also when read back from
    # the flat kwargs that checkpoints recorded before (`typed_kwargs`)
    with pytest.raises(ValueError, match="top_k=9 must be <= n_experts=8"):
        create_model("unilearn_tiny_patch16_64", moae=MoAEConfig(top_k=9))
    with pytest.raises(ValueError, match="top_k=9 must be <= n_experts=8"):
        create_model("unilearn_tiny_patch16_64", **typed_kwargs({"top_k": 9}))
    with pytest.raises(ValueError, match="capacity_factor"):
        create_model("vit_moe_tiny_patch16_64", **typed_kwargs({"capacity_factor": 0}))
    with pytest.raises(ValueError, match=r"moae_position \[0, 4\]"):
        create_model("vit_moe_tiny_patch16_64", moae=MoAEConfig(position=[0, 4]))
    with pytest.raises(ValueError, match=r"does not take \['top_k'\]"):
        create_model("unilearn_tiny_patch16_64", top_k=1)  # one way in: `moae`
