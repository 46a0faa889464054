"""Dual-modal MAE (paper Eq. 1-2): random masking per modality (the authors' RandMasking) or
tube masking, exact visible counts, visible tokens only in the encoder at fixed shapes, loss on
masked patches only, VideoMAE's normalised-pixel target."""

from __future__ import annotations

import pytest
import torch

from unilearn.models import create_model, load_pretrained, save_checkpoint
from unilearn.models.mae import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    masked_reconstruction_loss,
    patchify_target,
    random_mask,
    split_by_mask,
    tube_mask,
    visible_per_slice,
    visible_random,
)

MAE = "mae_tiny_patch16_64"


def test_random_masking_visible_counts_are_the_authors():
    # int(0.95 * 8 * 10 * 10) = 760 of 800 video tokens masked; int(0.9 * 1 * 10 * 10) = 90 of 100
    assert visible_random(8, 10, 0.95) == 40 and visible_random(1, 10, 0.90) == 10
    assert visible_random(4, 4, 0.95) == 4  # tiny 64^2, 8 frames: int(60.8) = 60 of 64 masked
    assert visible_random(2, 2, 0.95) == 1 and visible_random(1, 2, 0.90) == 1  # the demo's
    assert visible_random(1, 2, 0.99) == 1  # at least one visible


def test_random_mask_is_not_a_tube_and_exact_per_sample():
    torch.manual_seed(0)
    mask = random_mask(16, 800, 40)
    assert ((~mask).sum(1) == 40).all()
    slices = mask.view(16, 8, 100)
    assert not (slices == slices[:, :1]).all()  # positions differ between temporal slices


def test_default_masking_is_random_and_tube_is_an_option():
    random = create_model(MAE)
    tube = create_model(MAE, masking="tube")
    assert random.masking == "random"
    torch.manual_seed(1)
    video = torch.randn(3, 3, 8, 64, 64)
    r = random(video)["mask"]
    t = tube(video)["mask"]
    assert ((~r).sum(1) == 4).all() and ((~t).sum(1) == 4).all()  # 4 of 64 visible either way
    grid = t.view(3, 4, 16)
    assert (grid == grid[:, :1]).all()  # the tube option is still a tube
    with pytest.raises(ValueError, match="masking 'block'"):
        create_model(MAE, masking="block")


def test_visible_token_counts_at_vit_b_shapes():
    video = tube_mask(4, n_slices=8, tokens_per_slice=100, mask_ratio=0.95)
    image = tube_mask(4, n_slices=1, tokens_per_slice=100, mask_ratio=0.90)
    assert video.shape == (4, 800) and image.shape == (4, 100)
    assert ((~video).sum(1) == 40).all()  # round(800 * 0.05)
    assert ((~image).sum(1) == 10).all()  # round(100 * 0.10)


def test_tiny_shapes_round_whole_tubes_and_keep_at_least_one():
    assert visible_per_slice(16, 0.95) == 1  # 0.8 -> 1
    assert visible_per_slice(16, 0.90) == 2  # 1.6 -> 2
    assert visible_per_slice(4, 0.95) == 1  # 0.2 would round to 0: at least one


def test_mask_is_a_tube_the_same_for_every_temporal_slice():
    mask = tube_mask(3, n_slices=8, tokens_per_slice=100, mask_ratio=0.95).view(3, 8, 100)
    assert (mask == mask[:, :1]).all()
    assert not torch.equal(mask[0, 0], mask[1, 0])  # but different per sample


def test_mask_comes_from_torch_rng():
    torch.manual_seed(5)
    a = tube_mask(2, 8, 100, 0.9)
    b = random_mask(2, 800, 80)
    torch.manual_seed(5)
    assert torch.equal(a, tube_mask(2, 8, 100, 0.9)) and torch.equal(b, random_mask(2, 800, 80))


@pytest.mark.parametrize("masking", ["random", "tube"])
def test_encoder_sees_only_visible_tokens_for_both_modalities(masking):
    model = create_model(MAE, masking=masking)
    seen = []
    model.encoder.blocks[0].register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape))
    video_out = model(torch.randn(2, 3, 8, 64, 64))
    image_out = model(torch.randn(2, 3, 2, 64, 64))
    # video: 4 of 64 tokens either way; image: random 16 - int(14.4) = 2, tube round(1.6) = 2
    assert seen == [(2, 4, 192), (2, 2, 192)]
    assert video_out["pred"].shape == (2, 60, 3 * 2 * 16 * 16)
    assert image_out["pred"].shape == (2, 14, 3 * 2 * 16 * 16)
    assert video_out["mask"].sum().item() == 2 * 60


def test_mae_forward_never_reads_the_device(monkeypatch):
    model = create_model(MAE)

    def refuse(self, *args, **kwargs):
        raise AssertionError("host sync in the MAE forward")

    for name in ("tolist", "item", "nonzero", "__bool__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    model(torch.randn(2, 3, 8, 64, 64))["loss"].backward()


def test_encoder_input_is_the_visible_tokens_in_token_order():
    model = create_model(MAE).eval()
    x = torch.randn(2, 3, 8, 64, 64)
    mask = random_mask(2, 64, 4)
    captured = []
    model.encoder.blocks[0].register_forward_hook(lambda m, inp, out: captured.append(inp[0]))
    model(x, mask=mask)
    tokens = model.encoder.patch_embed(x) + model.encoder.pos_embed
    torch.testing.assert_close(captured[0], tokens[~mask].view(2, 4, -1))


def _masked_ids(mask: torch.Tensor) -> torch.Tensor:
    return split_by_mask(mask, int((~mask[0]).sum()))[1]


def test_loss_only_on_masked_patches():
    mask = tube_mask(2, 4, 16, 0.9)
    target = torch.randn(2, 64, 12)
    pred = torch.randn(2, int(mask[0].sum()), 12)
    masked = _masked_ids(mask)
    loss = masked_reconstruction_loss(pred, target, masked)
    changed_visible = target.clone()
    changed_visible[~mask] += 100.0
    assert torch.equal(masked_reconstruction_loss(pred, changed_visible, masked), loss)
    changed_masked = target.clone()
    changed_masked[mask] += 1.0
    assert masked_reconstruction_loss(pred, changed_masked, masked) != loss


def test_model_loss_is_the_masked_reconstruction_loss():
    # Visible pixels feed the encoder, so at model level we check the loss is exactly the
    # masked-only MSE of the returned prediction, and that a masked tube's pixels move it.
    model = create_model(MAE).eval()
    x = torch.randn(1, 3, 8, 64, 64)
    mask = tube_mask(1, 4, 16, 0.95)
    out = model(x, mask=mask)
    base = out["loss"]
    target = patchify_target(x, 16, 2, model.pixel_mean, model.pixel_std)
    torch.testing.assert_close(
        base, masked_reconstruction_loss(out["pred"], target, _masked_ids(mask))
    )
    grid = mask.view(1, 4, 4, 4)  # (t, h, w) token grid
    y = x.clone()
    t, h, w = (grid[0] == 1).nonzero()[0].tolist()
    y[:, :, 2 * t : 2 * t + 2, 16 * h : 16 * h + 16, 16 * w : 16 * w + 16] += torch.randn(
        3, 2, 16, 16
    )
    assert model(y, mask=mask)["loss"] != base


def test_norm_pix_target_is_videomaes():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 4, 32, 32)
    mean = torch.tensor(IMAGENET_MEAN)
    std = torch.tensor(IMAGENET_STD)
    target = patchify_target(x, 16, 2, mean, std, norm_pix_loss=True)
    assert target.shape == (1, 2 * 2 * 2, 2 * 16 * 16 * 3)
    pixels = x * std.view(1, 3, 1, 1, 1) + mean.view(1, 3, 1, 1, 1)
    # token (t=1, h=0, w=1): tubelet pixels laid out (p0, p1, p2) x channel
    tube = pixels[0, :, 2:4, 0:16, 16:32].permute(1, 2, 3, 0).reshape(-1, 3)
    expected = (tube - tube.mean(0)) / (tube.var(0, unbiased=True).sqrt() + 1e-6)
    torch.testing.assert_close(target[0, 1 * 4 + 0 * 2 + 1], expected.reshape(-1))
    raw = patchify_target(x, 16, 2, mean, std, norm_pix_loss=False)
    torch.testing.assert_close(raw[0, 5], tube.reshape(-1))


def test_one_mae_trains_on_image_and_video_batches():
    model = create_model(MAE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for x in (torch.randn(2, 3, 8, 64, 64), torch.randn(2, 3, 2, 64, 64)):
        out = model(x)
        optimizer.zero_grad()
        out["loss"].backward()
        assert torch.isfinite(out["loss"])
        assert model.encoder.patch_embed.proj.weight.grad.abs().sum() > 0
        optimizer.step()


def test_mae_encoder_initialises_unilearn(tmp_path):
    mae = create_model(MAE)
    save_checkpoint(tmp_path / "pretrain.pt", mae)
    model = create_model("unilearn_tiny_patch16_64")
    report = load_pretrained(model, tmp_path / "pretrain.pt")
    assert report.missing_backbone == [] and report.unexpected == []
    assert {k.split(".")[0] for k in report.missing_new} == {
        "blocks",
        "fc_norm",
        "head",
        "head_sfer",
    }
    assert all(".moae." in k for k in report.missing_new if k.startswith("blocks"))
    assert torch.equal(model.blocks[1].attn.qkv.weight, mae.encoder.blocks[1].attn.qkv.weight)
    assert "mask_token" in report.dropped and "encoder.norm.weight" in report.dropped


def test_mae_bf16_autocast_on_cpu():
    model = create_model(MAE)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, 8, 64, 64))
    out["loss"].backward()
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])


def decoder_shape(mae) -> tuple[int, int, int]:
    d = mae.decoder
    return len(d.blocks), d.head.in_features, d.blocks[0].attn.num_heads


def test_mae_decoder_is_the_sizes_changed_where_the_config_sets_it():
    # one rule, as for the encoder: the catalogue's size, changed by `model.decoder.*` where set;
    # so the config's MAE and `create_model` alone agree when the config sets nothing
    from unilearn.config import Config

    def mae(cfg: Config):
        name, kwargs = cfg.mae_spec()
        return create_model(name, **kwargs)

    tiny = Config.model_validate({"model": {"size": "tiny"}})
    with torch.device("meta"):
        alone, via_config = create_model(MAE), mae(tiny)
        deeper = mae(tiny.with_overrides(["model.decoder.depth=1"]))
        base = mae(Config())
    assert decoder_shape(alone) == decoder_shape(via_config) == (2, 96, 3)
    assert decoder_shape(deeper) == (1, 96, 3)
    assert decoder_shape(base) == (4, 384, 6)  # ViT-B's: VideoMAE's decoder
