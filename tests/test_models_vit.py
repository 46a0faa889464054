"""The ViT backbone: VideoMAE's layout and maths, images as one-slice videos, errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unilearn.models import create_model
from unilearn.models.vit import Attention, attend, sinusoid_position_table

TINY = "vit_tiny_patch16_64"


def video(b: int = 2, t: int = 8, size: int = 64) -> torch.Tensor:
    return torch.randn(b, 3, t, size, size)


def image(b: int = 2, size: int = 64) -> torch.Tensor:
    frame = torch.randn(b, 3, 1, size, size)
    return frame.repeat(1, 1, 2, 1, 1)  # an image is a frame repeated over one tubelet


def test_position_table_is_videomaes_sinusoid():
    # VideoMAE: 1-D sinusoid over the flat token index, angle = pos / 10000^(2*(j//2)/d)
    n, d = 50, 24
    angles = np.array([[p / np.power(10000, 2 * (j // 2) / d) for j in range(d)] for p in range(n)])
    angles[:, 0::2], angles[:, 1::2] = np.sin(angles[:, 0::2]), np.cos(angles[:, 1::2])
    expected = torch.tensor(angles, dtype=torch.float32)[None]
    assert torch.equal(sinusoid_position_table(n, d), expected)


def test_attention_is_softmax_qk_v_with_zero_key_bias():
    attn = Attention(dim=48, num_heads=4).eval()
    with torch.no_grad():
        attn.q_bias.normal_()
        attn.v_bias.normal_()
    x = torch.randn(2, 10, 48)
    w_q, w_k, w_v = attn.qkv.weight.chunk(3)
    q = (x @ w_q.T + attn.q_bias).view(2, 10, 4, 12).transpose(1, 2)
    k = (x @ w_k.T).view(2, 10, 4, 12).transpose(1, 2)  # no key bias, as VideoMAE
    v = (x @ w_v.T + attn.v_bias).view(2, 10, 4, 12).transpose(1, 2)
    weights = (q @ k.transpose(-2, -1) / 12**0.5).softmax(-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, 10, 48))
    torch.testing.assert_close(attn(x), expected, atol=1e-5, rtol=1e-5)


def test_image_uses_position_embeddings_of_temporal_index_zero():
    model = create_model(TINY)
    assert torch.equal(model.position_embedding(2), model.pos_embed[:, :16])
    assert model.position_embedding(8).shape == (1, 4 * 16, 192)
    x = image(1)
    tokens = model.embed(x)
    expected = model.patch_embed(x) + model.pos_embed[:, :16]
    assert tokens.shape == (1, 16, 192)
    assert torch.equal(tokens, expected)


@pytest.mark.parametrize("name", [TINY, "unilearn_tiny_patch16_64", "vit_moe_tiny_patch16_64"])
def test_image_and_video_batches_share_weights_and_train(name):
    model = create_model(name, num_classes_sfer=7)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for x, task in ((video(), "dfer"), (image(), "sfer")):
        logits = model(x, task=task)
        assert logits.shape == (2, 7)
        loss = logits.logsumexp(1).mean() + model.aux_loss()
        optimizer.zero_grad()
        loss.backward()
        assert model.patch_embed.proj.weight.grad.abs().sum() > 0  # same patch embed for both
        optimizer.step()
    after = model.state_dict()
    assert not torch.equal(before["blocks.0.attn.qkv.weight"], after["blocks.0.attn.qkv.weight"])


def test_forward_features_are_pooled_and_fc_normed():
    model = create_model(TINY).eval()
    x = video()
    features = model.forward_features(x)
    assert features.shape == (2, 192)
    tokens = model.embed(x)
    for block in model.blocks:
        tokens = block(tokens)
    torch.testing.assert_close(features, model.fc_norm(tokens.mean(1)))
    torch.testing.assert_close(model(x), model.head(features))


def test_wrong_input_shapes_are_errors_that_say_what_was_expected():
    model = create_model(TINY)
    with pytest.raises(ValueError, match=r"T=4.*T=8 \(video\) or T=2 \(image"):
        model(video(t=4))
    with pytest.raises(ValueError, match="32x32; this model takes 64x64"):
        model(video(size=32))
    with pytest.raises(ValueError, match="num_classes_sfer > 0"):
        model(video(), task="sfer")
    with pytest.raises(ValueError, match="unknown task"):
        model(video(), task="both")


def test_drop_path_only_in_training():
    model = create_model(TINY, drop_path_rate=0.5)
    x = video()
    model.train()
    torch.manual_seed(1)
    a = model(x)
    torch.manual_seed(2)
    b = model(x)
    assert not torch.allclose(a, b)
    model.eval()
    assert torch.equal(model(x), model(x))


def test_vit_has_no_aux_loss():
    model = create_model(TINY)
    model(video())
    assert model.aux_loss().item() == 0.0


def test_bf16_autocast_forward_backward_on_cpu():
    # The CUDA path runs bf16 autocast; CPU autocast exercises the same dtype handling.
    model = create_model("unilearn_tiny_patch16_64")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(video())
        loss = logits.float().logsumexp(1).mean() + model.aux_loss()
    loss.backward()
    assert torch.isfinite(loss)
    assert model.blocks[-1].moae.gate.w_gate.weight.grad is not None


def test_cpu_bf16_attention_is_sdpa_written_out():
    """In bf16 on CPU the attention runs as two matmuls (faster there than torch's flash kernel);
    its values and gradients are SDPA's to bf16 precision, and fp32 still goes through SDPA."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 50, 16) for _ in range(3))
    half = [t.bfloat16().requires_grad_() for t in (q, k, v)]
    ours = attend(*half, dropout_p=0.0)
    ours.float().square().sum().backward()
    ref = [t.clone().requires_grad_() for t in (q, k, v)]
    expect = torch.nn.functional.scaled_dot_product_attention(*ref)
    expect.square().sum().backward()
    assert ours.dtype == torch.bfloat16
    torch.testing.assert_close(ours.float(), expect, atol=3e-2, rtol=3e-2)
    for got, want in zip(half, ref, strict=True):
        torch.testing.assert_close(got.grad.float(), want.grad, atol=6e-2, rtol=6e-2)
    exact = attend(q, k, v, dropout_p=0.0)  # fp32: the fused kernel, bit for bit
    assert torch.equal(exact, torch.nn.functional.scaled_dot_product_attention(q, k, v))


@pytest.mark.parametrize(
    "name", ["vit_tiny_patch16_64", "unilearn_tiny_patch16_64", "mae_tiny_patch16_64"]
)
def test_tubelet_and_drop_path_are_the_configs_not_the_constructors(name):
    """The constructors restate no config default: both values are required, and a bare
    `create_model` builds with the config's (`ModelConfig`; the MAE pre-trains without drop
    path, which no config key sets)."""
    import inspect

    from unilearn.config import ModelConfig
    from unilearn.models.mae import MaskedAutoencoder
    from unilearn.models.registry import MAE_DROP_PATH
    from unilearn.models.vit import VisionTransformer

    for cls in (VisionTransformer, MaskedAutoencoder):
        params = inspect.signature(cls.__init__).parameters
        for key in ("tubelet_size", "drop_path_rate"):
            assert params[key].default is inspect.Parameter.empty, (cls.__name__, key)
    model = create_model(name)
    cfg = ModelConfig()
    assert model.tubelet_size == cfg.tubelet_size
    blocks = model.encoder.blocks if name.startswith("mae") else model.blocks
    last = blocks[-1].drop_path
    rate = getattr(last, "drop_prob", 0.0)
    assert rate == pytest.approx(MAE_DROP_PATH if name.startswith("mae") else cfg.drop_path)
    # the override reaches the patch embedding: 8 frames in tubelets of 4 -> 2 temporal slices
    embed = create_model(name, tubelet_size=4)
    embed = (embed.encoder if name.startswith("mae") else embed).patch_embed
    assert embed.proj.kernel_size[0] == 4
