"""Named model constructors: `create_model(name, **overrides)`, as timm's registry.

Families: `vit` (the VideoMAE baseline, and ViT-MTL with `num_classes_sfer=7`), `unilearn`
(ViT + MoAE, two heads), `vit_moe` (FFN -> FFN experts, two heads), `mae` (dual-modal MAE). Sizes:
`base` = ViT-B/16, 16 frames at 160^2; `tiny` = width 192, depth 4, 3 heads, 8 frames at 64^2.

Defaults are written once: the shapes in the catalogue (`MODEL_SIZES`), the MoAE / MoE settings in
the config schema (`unilearn.config.MoAEConfig`, which also validates them here); the model classes
below take them as required arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

from torch import nn

from unilearn.catalogue import ARCHS, MODEL_SIZES, model_name
from unilearn.config import ConfigError, MoAEConfig
from unilearn.models.mae import MaskedAutoencoder
from unilearn.models.moae import MoAEBlock
from unilearn.models.moe import MoEBlock
from unilearn.models.vit import VisionTransformer

# Per size: the encoder (and, for the MAE, decoder) kwargs the catalogue's sizes stand for.
SIZES: dict[str, dict[str, Any]] = {
    name: dict(
        img_size=s.input_size,
        num_frames=s.num_frames,
        embed_dim=s.width,
        depth=s.depth,
        num_heads=s.heads,
    )  # fmt: skip
    for name, s in MODEL_SIZES.items()
}
DECODERS: dict[str, dict[str, Any]] = {
    name: dict(
        decoder_embed_dim=s.decoder_width,
        decoder_depth=s.decoder_depth,
        decoder_num_heads=s.decoder_heads,
    )  # fmt: skip
    for name, s in MODEL_SIZES.items()
}
# Set by the families (a family's own parameters are overridable), never on the bare classes.
_NOT_OVERRIDABLE = {"moae_position", "expert_block_fn"}
# MoAE's adapter bottleneck as a fraction of the width (r = d / 4, the authors'); not a config key.
ADAPTER_RATIO = 0.25


def _vit(**kwargs: Any) -> VisionTransformer:
    return VisionTransformer(**kwargs)


def _unilearn(
    *,
    n_experts: int,
    top_k: int,
    moae_position: str | list[int],
    aux_loss_coef: float,
    noisy_gating: bool,
    capacity_factor: float | None,
    expert_residual: bool,
    adapter_ratio: float,
    **kwargs: Any,
) -> VisionTransformer:
    """UniLearn: a ViT with a MoAE beside the FFN of the blocks at `moae_position`."""
    block = partial(
        MoAEBlock,
        n_experts=n_experts,
        top_k=top_k,
        adapter_ratio=adapter_ratio,
        aux_loss_coef=aux_loss_coef,
        noisy_gating=noisy_gating,
        capacity_factor=capacity_factor,
        expert_residual=expert_residual,
    )
    return VisionTransformer(moae_position=moae_position, expert_block_fn=block, **kwargs)


def _vit_moe(
    *,
    n_experts: int,
    top_k: int,
    moae_position: str | list[int],
    aux_loss_coef: float,
    noisy_gating: bool,
    capacity_factor: float | None,
    **kwargs: Any,
) -> VisionTransformer:
    """ViT-MoE puts its FFN experts in the blocks where UniLearn puts MoAE (`moae_position`)."""
    block = partial(
        MoEBlock,
        n_experts=n_experts,
        top_k=top_k,
        aux_loss_coef=aux_loss_coef,
        noisy_gating=noisy_gating,
        capacity_factor=capacity_factor,
    )
    return VisionTransformer(moae_position=moae_position, expert_block_fn=block, **kwargs)


def _mae(**kwargs: Any) -> MaskedAutoencoder:
    return MaskedAutoencoder(**kwargs)


_FAMILIES: dict[str, Callable[..., nn.Module]] = {
    "vit": _vit,
    "unilearn": _unilearn,
    "vit_moe": _vit_moe,
    "mae": _mae,
}


def _defaults(arch: str, size: str) -> dict[str, Any]:
    """A family's defaults at a size: the catalogue's shape; for the mixtures a second (SFER)
    head of 7 classes and the config schema's MoAE defaults (`MoAEConfig`, written only there)."""
    defaults = dict(SIZES[size])
    if arch == "mae":
        defaults.update(DECODERS[size])
    if arch in ("unilearn", "vit_moe"):
        defaults.update(num_classes_sfer=7, **MoAEConfig().model_kwargs(arch))
    if arch == "unilearn":
        defaults["adapter_ratio"] = ADAPTER_RATIO
    return defaults


def _checked(name: str, arch: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` with the mixture's kwargs validated by the config schema's rules (top_k <=
    n_experts, ranges; block indices are the catalogue's `moae_block_indices`)."""
    if arch not in ("unilearn", "vit_moe"):
        return kwargs
    try:
        moae = MoAEConfig.from_model_kwargs(kwargs)
    except ConfigError as err:
        raise ValueError(f"{name}: {err}") from None
    return {**kwargs, **moae.model_kwargs(arch)}


_MODELS: dict[str, tuple[str, str]] = {
    model_name(arch, size): (arch, size) for arch in ARCHS for size in SIZES
}


def list_models() -> list[str]:
    """All registered model names."""
    return sorted(_MODELS)


def allowed_overrides(name: str) -> list[str]:
    """Keyword arguments `create_model(name, ...)` accepts."""
    arch, _ = _lookup(name)
    family = _FAMILIES[arch]
    keys = {p for p in inspect.signature(family).parameters if p != "kwargs"}
    base = MaskedAutoencoder if arch == "mae" else VisionTransformer
    keys |= {
        p for p in inspect.signature(base.__init__).parameters if p != "self"
    } - _NOT_OVERRIDABLE
    return sorted(keys)


def _lookup(name: str) -> tuple[str, str]:
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _MODELS[name]


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model; `overrides` replace its defaults (`num_frames`, `img_size`,
    `num_classes`, `num_classes_sfer`, `drop_path_rate`, `n_experts`, `top_k`, `moae_position`,
    `aux_loss_coef`, `norm_pix_loss`, `mask_ratio_video`, ...; see `allowed_overrides(name)`).

    The model remembers `model_name` and `model_kwargs` (the overrides) for its checkpoint meta,
    so `create_model(model.model_name, **model.model_kwargs)` rebuilds it.
    """
    arch, size = _lookup(name)
    allowed = allowed_overrides(name)
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ValueError(f"{name} does not take {unknown}; it takes: {', '.join(allowed)}")
    model = _FAMILIES[arch](**_checked(name, arch, {**_defaults(arch, size), **overrides}))
    model.model_name = name
    model.model_kwargs = dict(overrides)
    return model
