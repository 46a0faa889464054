"""The UniLearn authors' checkpoints (MSA-LMC/S4D) load exactly: their fine-tuned
`checkpoint-best.pth` (MoAE under `moe_layer`, heads `head.video` / `head.image`) into our
UniLearn, every key mapped, and their pre-training trainer's checkpoint (`encoder.*` /
`decoder.*` under `model`) into our MAE and fine-tune models. Checkpoints here are written in
their key layout by this test code; the logit comparison against their model code is in
docs/models.md."""

from __future__ import annotations

import argparse

import pytest
import torch
from test_models_checkpoint import (
    CLASSES,
    DEPTH,
    D,
    videomae_block,
    videomae_pretrain_state_dict,
)

from unilearn.config import typed_kwargs
from unilearn.models import create_model, load_pretrained
from unilearn.models.checkpoint import CheckpointError, authors_model_kwargs

MOE_LAYERS, N_EXPERTS, R = (2, 3), 4, D // 4
VIDEO_CLASSES = 11  # distinct from the 7 image classes, so a swapped head cannot pass


def authors_finetuned_state_dict() -> dict[str, torch.Tensor]:
    """Their `VisionTransformerMoE` (moe type `moe_adapters`) state dict, key for key."""
    sd = {"patch_embed.proj.weight": torch.randn(D, 3, 2, 16, 16) * 0.02}
    sd["patch_embed.proj.bias"] = torch.randn(D) * 0.02
    for i in range(DEPTH):
        sd.update(videomae_block(f"blocks.{i}.", D))
        if i in MOE_LAYERS:
            p = f"blocks.{i}.moe_layer."
            for linear in ("topkroute_linear", "noise_linear"):
                sd[f"{p}router.{linear}.weight"] = torch.randn(N_EXPERTS, D)
                sd[f"{p}router.{linear}.bias"] = torch.randn(N_EXPERTS)
            for e in range(N_EXPERTS):
                sd[f"{p}experts.{e}.fc1.weight"] = torch.randn(R, D) * 0.02
                sd[f"{p}experts.{e}.fc1.bias"] = torch.randn(R) * 0.02
                sd[f"{p}experts.{e}.fc2.weight"] = torch.randn(D, R) * 0.02
                sd[f"{p}experts.{e}.fc2.bias"] = torch.randn(D) * 0.02
    sd.update({"fc_norm.weight": torch.ones(D), "fc_norm.bias": torch.zeros(D)})
    sd.update({"head.image.weight": torch.randn(CLASSES, D), "head.image.bias": torch.randn(CLASSES)})  # fmt: skip
    sd.update({"head.video.weight": torch.randn(VIDEO_CLASSES, D), "head.video.bias": torch.randn(VIDEO_CLASSES)})  # fmt: skip
    return sd


def save_like_authors(path, state_dict) -> None:
    # their utils.save_model: model, optimizer (None for checkpoint-best), epoch, scaler, args
    torch.save({"model": state_dict, "optimizer": None, "epoch": 41,
                "scaler": {"scale": 65536.0, "growth_factor": 2.0},
                "args": argparse.Namespace(model="vitmoe_base_patch16_160", top_k=2)}, path)  # fmt: skip


def authors_unilearn(state_dict, **overrides):
    return create_model("unilearn_tiny_patch16_64", **typed_kwargs({**authors_model_kwargs(state_dict), **overrides}))  # fmt: skip


def test_model_shape_is_read_from_the_authors_weights():
    kwargs = authors_model_kwargs(authors_finetuned_state_dict())
    assert kwargs == {"num_classes": VIDEO_CLASSES, "num_classes_sfer": CLASSES,
                      "moae_position": [2, 3], "n_experts": N_EXPERTS}  # fmt: skip


def test_authors_finetuned_checkpoint_loads_every_key(tmp_path):
    theirs = authors_finetuned_state_dict()
    save_like_authors(tmp_path / "checkpoint-best.pth", theirs)
    model = authors_unilearn(theirs)
    report = load_pretrained(model, tmp_path / "checkpoint-best.pth", complete=True)
    assert report.missing == [] and report.unexpected == [] and report.dropped == {}
    assert report.layout == "authors" and report.finetuned
    ours = model.state_dict()
    assert len(ours) == len(theirs)  # one of ours per key of theirs, nothing left over
    block = "blocks.3"
    pairs = {
        f"{block}.moe_layer.router.topkroute_linear.weight": f"{block}.moae.gate.w_gate.weight",
        f"{block}.moe_layer.router.topkroute_linear.bias": f"{block}.moae.gate.w_gate.bias",
        f"{block}.moe_layer.router.noise_linear.bias": f"{block}.moae.gate.w_noise.bias",
        f"{block}.moe_layer.experts.3.fc2.weight": f"{block}.moae.experts.3.fc2.weight",
        "head.video.weight": "head.weight",
        "head.image.bias": "head_sfer.bias",
        "blocks.1.mlp.fc1.weight": "blocks.1.mlp.fc1.weight",
    }
    for their_key, our_key in pairs.items():
        assert torch.equal(ours[our_key], theirs[their_key]), their_key


def test_authors_checkpoint_missing_experts_is_an_error_naming_them(tmp_path):
    theirs = authors_finetuned_state_dict()
    model = authors_unilearn(theirs)
    for key in [k for k in theirs if k.startswith("blocks.3.moe_layer.experts.")]:
        del theirs[key]
    save_like_authors(tmp_path / "partial.pth", theirs)
    with pytest.raises(CheckpointError, match=r"partial.pth.*\n(.*\n)*.*NOT LOADED.*blocks\.N\.moae\.experts\.N\.fc1\.weight"):  # fmt: skip
        load_pretrained(model, tmp_path / "partial.pth")  # not even strict: always an error


def test_authors_checkpoint_missing_a_head_is_an_error_naming_it(tmp_path):
    theirs = authors_finetuned_state_dict()
    model = authors_unilearn(theirs)
    del theirs["head.image.weight"], theirs["head.image.bias"]
    save_like_authors(tmp_path / "no_image_head.pth", theirs)
    with pytest.raises(CheckpointError, match=r"NOT LOADED.*head_sfer\.weight"):
        load_pretrained(model, tmp_path / "no_image_head.pth")


def test_authors_checkpoint_into_a_model_with_other_experts_is_an_error(tmp_path):
    theirs = authors_finetuned_state_dict()
    save_like_authors(tmp_path / "checkpoint-best.pth", theirs)
    with pytest.raises(CheckpointError, match=r"blocks\.2\.moae\.gate\.w_gate\.weight has shape.*expert count"):  # fmt: skip
        load_pretrained(authors_unilearn(theirs, n_experts=2), tmp_path / "checkpoint-best.pth")
    with pytest.raises(CheckpointError, match=r"does not fit the model"):
        load_pretrained(authors_unilearn(theirs, moae_position=[1, 3]), tmp_path / "checkpoint-best.pth")  # fmt: skip


def test_authors_pretraining_trainer_checkpoint_loads_into_mae_and_unilearn(tmp_path):
    # omnivision's trainer saves model (VideoMAE pre-train keys), optimizer, epoch, loss, steps,
    # scaler; their PretrainVisionTransformer's encoder head is an Identity (no keys)
    sd = videomae_pretrain_state_dict()
    mae = create_model("mae_tiny_patch16_64", decoder_embed_dim=96, decoder_depth=2)
    optimizer = torch.optim.AdamW(mae.parameters())
    torch.save({"model": sd, "optimizer": optimizer.state_dict(), "epoch": 100, "loss": {},
                "steps": {"train": 52000, "val": 0}, "scaler": {"scale": 65536.0}},
               tmp_path / "checkpoint.pt")  # fmt: skip
    report = load_pretrained(mae, tmp_path / "checkpoint.pt", strict=True)
    assert report.missing == [] and report.unexpected == [] and not report.finetuned
    assert all(torch.equal(mae.state_dict()[k], v) for k, v in sd.items())
    unilearn = create_model("unilearn_tiny_patch16_64")
    report = load_pretrained(unilearn, tmp_path / "checkpoint.pt")
    assert report.ok and report.unexpected == []
    assert torch.equal(unilearn.blocks[3].mlp.fc2.weight, sd["encoder.blocks.3.mlp.fc2.weight"])
    # as their fine-tuning: MoAE, fc_norm and both heads start fresh
    fresh = {k.split(".")[0] if not k.startswith("blocks") else "moae" for k in report.missing}
    assert fresh == {"moae", "fc_norm", "head", "head_sfer"}
