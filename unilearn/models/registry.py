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
from functools import partial
from typing import Any

from torch import nn

from unilearn.catalogue import ADAPTER_RATIO, ARCHS, MODEL_SIZES, model_name
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
# The mixtures: the block class a mixture puts at `moae_position` (UniLearn: MoAE beside the FFN;
# ViT-MoE: the FFN replaced by FFN experts, in the blocks where UniLearn puts MoAE).
EXPERT_BLOCKS: dict[str, type[nn.Module]] = {"unilearn": MoAEBlock, "vit_moe": MoEBlock}


def _mixture_defaults(arch: str) -> dict[str, Any]:
    """A mixture's own kwargs and their defaults: the config schema's (`MoAEConfig`, written
    only there), flattened as the config resolves them; UniLearn adds its adapter ratio."""
    defaults = MoAEConfig().model_kwargs(arch)
    return defaults | {"adapter_ratio": ADAPTER_RATIO} if arch == "unilearn" else defaults


def _defaults(arch: str, size: str) -> dict[str, Any]:
    """A family's defaults at a size: the catalogue's shape (and MAE decoder); a mixture also has
    a second (SFER) head of 7 classes and its own kwargs (`_mixture_defaults`)."""
    defaults = dict(SIZES[size])
    if arch == "mae":
        defaults.update(DECODERS[size])
    if arch in EXPERT_BLOCKS:
        defaults.update(num_classes_sfer=7, **_mixture_defaults(arch))
    return defaults


def _build(name: str, arch: str, kwargs: dict[str, Any]) -> nn.Module:
    """The model of `arch` from its complete kwargs. A mixture's own kwargs are checked by the
    config schema's rules (top_k <= n_experts, ranges; block indices by the catalogue's
    `moae_block_indices`) and go to its expert block; the rest to the ViT."""
    if arch == "mae":
        return MaskedAutoencoder(**kwargs)
    if arch not in EXPERT_BLOCKS:
        return VisionTransformer(**kwargs)
    try:
        moae = MoAEConfig.from_model_kwargs(kwargs)
    except ConfigError as err:
        raise ValueError(f"{name}: {err}") from None
    block = {key: kwargs.pop(key) for key in _mixture_defaults(arch)} | moae.model_kwargs(arch)
    position = block.pop("moae_position")
    expert_block = partial(EXPERT_BLOCKS[arch], **block)
    return VisionTransformer(moae_position=position, expert_block_fn=expert_block, **kwargs)


_MODELS: dict[str, tuple[str, str]] = {
    model_name(arch, size): (arch, size) for arch in ARCHS for size in SIZES
}


def list_models() -> list[str]:
    """All registered model names."""
    return sorted(_MODELS)


def allowed_overrides(name: str) -> list[str]:
    """Keyword arguments `create_model(name, ...)` accepts: the class's (but the expert-block
    wiring, which the registry sets) and, for a mixture, its own (`n_experts`, ...)."""
    arch, _ = _lookup(name)
    base = MaskedAutoencoder if arch == "mae" else VisionTransformer
    keys = {p for p in inspect.signature(base.__init__).parameters if p != "self"}
    keys -= {"moae_position", "expert_block_fn"}
    if arch in EXPERT_BLOCKS:
        keys |= set(_mixture_defaults(arch))
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
    model = _build(name, arch, {**_defaults(arch, size), **overrides})
    model.model_name = name
    model.model_kwargs = dict(overrides)
    return model
