"""Checkpoints: VideoMAE / MAE-DFER formats load (fine-tune and pre-train), ours round-trip and
rebuild from meta, bad files give errors that name them."""

from __future__ import annotations

import argparse
import datetime

import numpy as np
import pytest
import torch

from unilearn.config import MoAEConfig
from unilearn.models import create_model, load_pretrained, model_from_checkpoint, save_checkpoint
from unilearn.models.checkpoint import CheckpointError

D, DEPTH, CLASSES = 192, 4, 7  # vit_tiny_patch16_64


def videomae_block(prefix: str, d: int) -> dict[str, torch.Tensor]:
    """One block exactly as VideoMAE's modeling_finetune.Block names and shapes it."""
    shapes = {
        "norm1.weight": (d,),
        "norm1.bias": (d,),
        "attn.q_bias": (d,),
        "attn.v_bias": (d,),
        "attn.qkv.weight": (3 * d, d),
        "attn.proj.weight": (d, d),
        "attn.proj.bias": (d,),
        "norm2.weight": (d,),
        "norm2.bias": (d,),
        "mlp.fc1.weight": (4 * d, d),
        "mlp.fc1.bias": (4 * d,),
        "mlp.fc2.weight": (d, 4 * d),
        "mlp.fc2.bias": (d,),
    }
    return {prefix + k: torch.randn(s) * 0.02 for k, s in shapes.items()}


def videomae_finetune_state_dict() -> dict[str, torch.Tensor]:
    """VideoMAE's fine-tune VisionTransformer keys (use_mean_pooling: fc_norm, no pos_embed)."""
    sd = {"patch_embed.proj.weight": torch.randn(D, 3, 2, 16, 16) * 0.02}
    sd["patch_embed.proj.bias"] = torch.randn(D) * 0.02
    for i in range(DEPTH):
        sd.update(videomae_block(f"blocks.{i}.", D))
    sd.update({"fc_norm.weight": torch.ones(D), "fc_norm.bias": torch.zeros(D)})
    sd.update({"head.weight": torch.randn(CLASSES, D), "head.bias": torch.randn(CLASSES)})
    return sd


def videomae_pretrain_state_dict(decoder_dim: int = 96) -> dict[str, torch.Tensor]:
    """VideoMAE's PretrainVisionTransformer keys: encoder.*, encoder.norm, decoder.*, mask_token."""
    finetune = videomae_finetune_state_dict()
    sd = {"encoder." + k: v for k, v in finetune.items() if not k.startswith(("fc_norm", "head"))}
    sd.update({"encoder.norm.weight": torch.ones(D), "encoder.norm.bias": torch.zeros(D)})
    sd["encoder_to_decoder.weight"] = torch.randn(decoder_dim, D)
    sd["mask_token"] = torch.randn(1, 1, decoder_dim)
    for i in range(2):
        sd.update(videomae_block(f"decoder.blocks.{i}.", decoder_dim))
    sd.update(
        {
            "decoder.norm.weight": torch.ones(decoder_dim),
            "decoder.norm.bias": torch.zeros(decoder_dim),
        }
    )
    sd.update(
        {
            "decoder.head.weight": torch.randn(1536, decoder_dim),
            "decoder.head.bias": torch.zeros(1536),
        }
    )
    return sd


def save_like_videomae(path, state_dict, key="model") -> None:
    # VideoMAE's utils.save_model also stores its argparse args: must load with weights_only=True.
    torch.save({key: state_dict, "epoch": 9, "args": argparse.Namespace(model="vit")}, path)


def test_videomae_finetune_checkpoint_round_trips(tmp_path):
    videomae = videomae_finetune_state_dict()
    save_like_videomae(tmp_path / "videomae.pth", videomae)
    model = create_model("vit_tiny_patch16_64").eval()
    report = load_pretrained(model, tmp_path / "videomae.pth", strict=True)
    assert report.missing == [] and report.unexpected == [] and report.dropped == {}
    ours = model.state_dict()
    assert set(ours) == set(videomae)  # exactly VideoMAE's key set, nothing more or less
    assert all(torch.equal(ours[k], videomae[k]) for k in videomae)
    # and back: our checkpoint's weights are a VideoMAE state dict
    save_checkpoint(tmp_path / "ours.pt", model)
    rebuilt, meta = model_from_checkpoint(tmp_path / "ours.pt")
    x = torch.randn(1, 3, 8, 64, 64)
    assert torch.equal(rebuilt(x), model(x))
    assert meta["model_name"] == "vit_tiny_patch16_64" and meta["num_frames"] == 8


def test_videomae_pretrain_checkpoint_loads_into_finetune_models(tmp_path):
    save_like_videomae(tmp_path / "pretrain.pth", videomae_pretrain_state_dict())
    vit = create_model("vit_tiny_patch16_64")
    report = load_pretrained(vit, tmp_path / "pretrain.pth")
    assert sorted(report.missing) == ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]
    assert report.unexpected == [] and report.ok
    assert set(report.dropped) >= {"mask_token", "encoder_to_decoder.weight", "encoder.norm.weight"}

    unilearn = create_model("unilearn_tiny_patch16_64")
    report = load_pretrained(unilearn, tmp_path / "pretrain.pth")
    assert report.missing_backbone == [] and report.unexpected == []
    new = {k for k in report.missing if k.startswith("blocks.")}
    assert new and all(k.startswith(("blocks.2.moae.", "blocks.3.moae.")) for k in new)
    assert "head_sfer.weight" in report.missing
    assert "new in this model" in str(report) and "NOT LOADED" not in str(report)


def test_mae_dfer_style_checkpoint_with_module_key_and_ddp_prefix(tmp_path):
    sd = {"module." + k: v for k, v in videomae_pretrain_state_dict().items()}
    save_like_videomae(tmp_path / "mae_dfer.pth", sd, key="module")
    mae = create_model("mae_tiny_patch16_64")
    report = load_pretrained(mae, tmp_path / "mae_dfer.pth", strict=True)
    assert report.missing == [] and report.unexpected == []


def test_head_dropped_when_class_count_differs(tmp_path):
    save_like_videomae(tmp_path / "kinetics.pth", videomae_finetune_state_dict())
    model = create_model("vit_tiny_patch16_64", num_classes=11)
    report = load_pretrained(model, tmp_path / "kinetics.pth")
    assert "class count differs" in report.dropped["head.weight"]
    assert sorted(report.missing) == ["head.bias", "head.weight"] and report.ok


def test_shape_mismatch_names_the_key(tmp_path):
    save_like_videomae(tmp_path / "tiny.pth", videomae_finetune_state_dict())
    model = create_model("vit_tiny_patch16_64", embed_dim=96)
    with pytest.raises(CheckpointError, match=r"tiny.pth: patch_embed.proj.weight has shape"):
        load_pretrained(model, tmp_path / "tiny.pth")


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    model = create_model("vit_tiny_patch16_64")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match=r"garbage.pt: not a readable PyTorch checkpoint"):
        load_pretrained(model, garbage)
    truncated = tmp_path / "truncated.pt"
    save_checkpoint(tmp_path / "good.pt", model)
    truncated.write_bytes((tmp_path / "good.pt").read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        load_pretrained(model, truncated)
    tensor_file = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor_file)
    with pytest.raises(CheckpointError, match="tensor.pt: expected a dict checkpoint"):
        load_pretrained(model, tensor_file)
    no_weights = tmp_path / "no_weights.pt"
    torch.save({"epoch": 3, "note": "hello"}, no_weights)
    with pytest.raises(CheckpointError, match="no_weights.pt: no model weights"):
        load_pretrained(model, no_weights)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_pretrained(model, tmp_path / "missing.pt")


def test_unsafe_pickle_is_refused(tmp_path):
    # any class outside torch's allow-list (here datetime.date) is refused, never executed
    torch.save({"model": {}, "payload": datetime.date(2020, 1, 1)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt.*weights_only=True"):
        load_pretrained(create_model("vit_tiny_patch16_64"), tmp_path / "evil.pt")


def test_model_from_checkpoint_rebuilds_with_overrides(tmp_path):
    model = create_model(
        "unilearn_tiny_patch16_64", moae=MoAEConfig(n_experts=4, position=[1, 3])
    ).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    labels = {"dfer": ["a"] * 7, "sfer": ["b"] * 7}
    save_checkpoint(tmp_path / "run.pt", model, {"labels": labels, "config_hash": "abc"}, epoch=3)
    rebuilt, meta = model_from_checkpoint(tmp_path / "run.pt")
    assert meta["labels"] == labels and meta["model_kwargs"]["moae"]["position"] == [1, 3]
    x = torch.randn(2, 3, 8, 64, 64)
    assert torch.equal(rebuilt(x, task="sfer"), model(x, task="sfer"))
    assert torch.load(tmp_path / "run.pt", weights_only=True)["epoch"] == 3
    assert list(tmp_path.iterdir()) == [tmp_path / "run.pt"]  # atomic: no temp file left


def test_save_checkpoint_refuses_what_weights_only_cannot_load(tmp_path):
    model = create_model("vit_tiny_patch16_64")
    with pytest.raises(TypeError, match=r"rng\['numpy'\] is a numpy.ndarray"):
        save_checkpoint(tmp_path / "x.pt", model, rng={"numpy": np.zeros(3)})
    assert not (tmp_path / "x.pt").exists()


def test_foreign_checkpoint_cannot_rebuild_from_meta(tmp_path):
    save_like_videomae(tmp_path / "videomae.pth", videomae_finetune_state_dict())
    with pytest.raises(CheckpointError, match="no meta.model_name"):
        model_from_checkpoint(tmp_path / "videomae.pth")
