"""Checkpoints written before the mixture travelled as one `moae` value still load. The fixture
was written by main 43bedef's fine-tuning code (tests/fixtures/make_main_checkpoint.py): its
meta records the flat `n_experts`, `top_k`, `moae_position`, ... of that time. It rebuilds with
the same mixture and gives the logits that code gave, through `model_from_checkpoint` (what
`unilearn evaluate` runs), `load_inference_model` (`unilearn predict`) and `load_pretrained`
into the model today's config builds; new checkpoints write the mixture whole."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unilearn.catalogue import get_label_set
from unilearn.config import MoAEConfig, load_config
from unilearn.models import create_model, load_pretrained, model_from_checkpoint, save_checkpoint
from unilearn.models.routing import NoisyTopKGate
from unilearn.predict.model import load_inference_model

FIXTURE = Path(__file__).parent / "fixtures" / "unilearn-main-43bedef.pt"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# the config the fixture was trained from (demo.yaml with these overrides)
OVERRIDES = ["model.width=16", "model.heads=2", "model.moae.n_experts=3", "model.moae.top_k=1",
             "model.moae.position=[1,3]", "model.moae.capacity_group=2"]  # fmt: skip
FLAT = {"n_experts": 3, "top_k": 1, "moae_position": [1, 3], "capacity_group": 2}


@pytest.fixture(scope="module")
def probe() -> dict[str, torch.Tensor]:
    return torch.load(FIXTURE, weights_only=True)["probe"]


def mixture(model: torch.nn.Module) -> list[tuple]:
    return [(g.n_experts, g.top_k, g.capacity_factor, g.noisy_gating, g.aux_loss_coef)
            for g in model.modules() if isinstance(g, NoisyTopKGate)]  # fmt: skip


def same_logits(model: torch.nn.Module, probe: dict[str, torch.Tensor]) -> bool:
    with torch.no_grad():
        return all(torch.equal(model(probe["x"], task=t), probe[t]) for t in ("dfer", "sfer"))


def test_flat_model_kwargs_of_an_older_checkpoint_rebuild_its_mixture(probe):
    model, meta = model_from_checkpoint(FIXTURE)
    assert "moae" not in meta["model_kwargs"]  # the old format: flat
    assert {k: meta["model_kwargs"][k] for k in FLAT} == FLAT
    assert model.moae_blocks == (1, 3) and mixture(model) == [(3, 1, 1.0, True, 0.0)] * 2
    assert {b.moae.capacity_group for b in model.blocks[1::2]} == {2}
    assert same_logits(model, probe)


def test_unilearn_predict_loads_an_older_checkpoint(probe):
    spec = load_inference_model(FIXTURE)
    assert spec.model_name == "unilearn_tiny_patch16_64" and spec.input_size == 32
    assert spec.labels["dfer"] == list(get_label_set("dfew").classes)
    assert same_logits(spec.model, probe)


def test_todays_config_model_loads_an_older_checkpoint(probe):
    resolved = load_config(CONFIGS / "demo.yaml", OVERRIDES).resolve_experiment("unilearn", "dfew")
    model = create_model(resolved.model_name, **resolved.model_kwargs).eval()
    load_pretrained(model, FIXTURE, strict=True)
    old, _ = model_from_checkpoint(FIXTURE)
    assert mixture(model) == mixture(old) and same_logits(model, probe)


def test_new_checkpoints_write_the_mixture_whole(tmp_path, probe):
    old, _ = model_from_checkpoint(FIXTURE)
    save_checkpoint(tmp_path / "new.pt", old)
    model, meta = model_from_checkpoint(tmp_path / "new.pt")
    moae = MoAEConfig(n_experts=3, top_k=1, position=[1, 3], capacity_group=2)
    assert meta["model_kwargs"]["moae"] == moae.model_dump(mode="json")
    assert not set(FLAT) & set(meta["model_kwargs"])
    assert mixture(model) == mixture(old) and same_logits(model, probe)
