"""`unilearn params` and the registry: paper Table 3 parameter counts, CLI output, names."""

from __future__ import annotations

import json

import pytest
import torch

from unilearn import cli
from unilearn.config import MoAEConfig
from unilearn.models import create_model, list_models
from unilearn.models.moae import count_parameters

M = 1_000_000


@pytest.mark.parametrize(
    ("name", "total", "active"),
    [
        ("vit_base_patch16_160", 86 * M, 86 * M),
        ("unilearn_base_patch16_160", 101 * M, 90 * M),
        ("vit_moe_base_patch16_160", 285 * M, 115 * M),
    ],
)
def test_table3_param_counts(name, total, active):
    with torch.device("meta"):  # ViT-B without allocating it
        model = create_model(name)
    counts = count_parameters(model)
    assert abs(counts["total"] - total) < M, counts
    assert abs(counts["active"] - active) < M, counts


def test_active_counts_k_of_n_experts_and_not_the_gate_noise():
    with torch.device("meta"):
        dense = create_model("vit_tiny_patch16_64", num_classes_sfer=7)
        moae = create_model("unilearn_tiny_patch16_64", moae=MoAEConfig(n_experts=4, top_k=1))
    d, r = 192, 48
    adapter = d * r + r + r * d + d
    blocks = 2  # later half of 4
    router = 2 * (4 * d + 4)  # Wg, Wnoise with their biases (as the authors' router)
    assert count_parameters(moae)["total"] == count_parameters(dense)["total"] + blocks * (
        4 * adapter + router
    )
    # active: 1 adapter + Wg, bg per block; the SFER head does not serve a DFER token
    sfer_head = d * 7 + 7
    assert count_parameters(moae)["active"] == count_parameters(dense)[
        "total"
    ] - sfer_head + blocks * (adapter + 4 * d + 4)


def test_params_cli_prints_json(capsys):
    assert (
        cli.main(["params", "unilearn_tiny_patch16_64", "n_experts=4", "moae_position=[0,2]"]) == 0
    )
    counts = json.loads(capsys.readouterr().out)
    assert set(counts) == {"total", "active"} and counts["total"] > counts["active"] > 0


def test_params_cli_rejects_unknown_override(capsys):
    assert cli.main(["params", "vit_tiny_patch16_64", "n_experts=4"]) == 2  # bad input
    assert "does not take ['n_experts']" in capsys.readouterr().err


def test_registry_names_and_unknown_name():
    names = set(list_models())
    for arch in ("vit", "unilearn", "vit_moe", "mae"):
        assert f"{arch}_base_patch16_160" in names and f"{arch}_tiny_patch16_64" in names
    with pytest.raises(ValueError, match="unknown model 'vit_huge'.*vit_base_patch16_160"):
        create_model("vit_huge")
