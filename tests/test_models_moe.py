"""The ViT-MoE baseline: FFN experts in the MoAE positions, sparse equals dense, upcycling."""

from __future__ import annotations

import torch

from unilearn.config import MoAEConfig
from unilearn.models import create_model, load_pretrained, save_checkpoint
from unilearn.models.moae import MoEFFN
from unilearn.models.routing import dense_mixture


def test_sparse_moe_equals_dense():
    moae = MoAEConfig(n_experts=6, top_k=2, aux_loss_coef=0.0, noisy_gating=True,
                      capacity_factor=1.0, capacity_group=None)  # fmt: skip
    moe = MoEFFN(dim=32, hidden=64, moae=moae, drop=0.0).eval()
    with torch.no_grad():
        moe.gate.w_gate.weight.normal_()
    x = torch.randn(3, 20, 32)
    # the reference: all n FFNs on every token, weighted by the dense G(x)
    flat = x.reshape(-1, 32)
    dense = dense_mixture(flat, moe.gate(flat).dense(6), list(moe.experts)).reshape(x.shape)
    torch.testing.assert_close(moe(x), dense, atol=1e-5, rtol=0)


def test_moe_replaces_the_ffn_in_the_moae_blocks():
    model = create_model("vit_moe_tiny_patch16_64", moae=MoAEConfig(position="early"))
    assert [type(b.mlp).__name__ for b in model.blocks] == ["MoEFFN", "MoEFFN", "Mlp", "Mlp"]
    keys = model.state_dict()
    assert "blocks.0.mlp.experts.7.fc2.weight" in keys and "blocks.0.mlp.fc1.weight" not in keys


def test_dense_vit_checkpoint_upcycles_into_every_expert(tmp_path):
    vit = create_model("vit_tiny_patch16_64")
    save_checkpoint(tmp_path / "vit.pt", vit)
    moe = create_model("vit_moe_tiny_patch16_64")
    report = load_pretrained(moe, tmp_path / "vit.pt")
    assert report.missing_backbone == [] and report.unexpected == []
    assert len(report.upcycled) == 2 * 8 * 4  # 2 blocks x 8 experts x fc1/fc2 weight+bias
    for e in range(8):
        assert torch.equal(moe.blocks[3].mlp.experts[e].fc1.weight, vit.blocks[3].mlp.fc1.weight)
    assert all(
        k.startswith(("blocks.2.mlp.gate", "blocks.3.mlp.gate", "head_sfer"))
        for k in report.missing
    )
