"""Named model constructors: `create_model(name, **overrides)`, as timm's registry.

Families: `vit` (the VideoMAE baseline, and ViT-MTL with `num_classes_sfer=7`), `unilearn`
(ViT + MoAE, two heads), `vit_moe` (FFN -> FFN experts, two heads), `mae` (dual-modal MAE). Sizes:
`base` = ViT-B/16, 16 frames at 160^2; `tiny` = width 192, depth 4, 3 heads, 8 frames at 64^2.

Defaults are written once: the shapes in the catalogue (`MODEL_SIZES`), the mixture's settings in
the config (`unilearn.config.MoAEConfig`, one value that a mixture's `moae` takes whole and hands
on to its expert blocks and their gates).
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from unilearn.catalogue import ARCHS, MODEL_SIZES, model_name
from unilearn.config import MoAEConfig, ModelConfig, PretrainConfig, plain_kwargs
from unilearn.models.mae import MaskedAutoencoder
from unilearn.models.moae import MoAEBlock, MoEBlock
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
# Pre-training has no stochastic depth (VideoMAE's and OmniMAE's pre-training recipes: 0), so no
# config key sets the MAE's; fine-tuning's is `model.drop_path`.
MAE_DROP_PATH = 0.0
# The mixtures (`unilearn.config.MIXTURE_ARCHS`): the block class a mixture puts at
# `moae.position` (UniLearn: MoAE beside the FFN; ViT-MoE: the FFN replaced by FFN experts).
EXPERT_BLOCKS: dict[str, type[nn.Module]] = {"unilearn": MoAEBlock, "vit_moe": MoEBlock}


def _defaults(arch: str, size: str) -> dict[str, Any]:
    """A family's defaults at a size: the catalogue's shape and the config's tubelet
    (`ModelConfig`); the MAE's decoder (the catalogue's) and masking and loss (the config's
    `PretrainConfig`); a classifier's stochastic depth (the config's `ModelConfig`) and head of 7
    classes; a mixture also has a second (SFER) head of 7 classes and the config's mixture
    (`MoAEConfig()`)."""
    model = ModelConfig()
    defaults = dict(SIZES[size], tubelet_size=model.tubelet_size)
    if arch == "mae":
        pt = PretrainConfig()
        return defaults | DECODERS[size] | dict(
            mask_ratio_video=pt.mask_ratio_video, mask_ratio_image=pt.mask_ratio_image,
            masking=pt.masking, norm_pix_loss=pt.norm_pix_loss, drop_path_rate=MAE_DROP_PATH,
        )  # fmt: skip
    defaults["drop_path_rate"] = model.drop_path
    defaults["num_classes"] = 7  # a DFER head of DFEW's 7 classes
    if arch in EXPERT_BLOCKS:
        defaults.update(num_classes_sfer=7, moae=MoAEConfig(), expert_block=EXPERT_BLOCKS[arch])
    return defaults


_MODELS: dict[str, tuple[str, str]] = {
    model_name(arch, size): (arch, size) for arch in ARCHS for size in SIZES
}


def list_models() -> list[str]:
    """All registered model names."""
    return sorted(_MODELS)


def allowed_overrides(name: str) -> list[str]:
    """Keyword arguments `create_model(name, ...)` accepts: the class's (but the expert block,
    which the registry sets; `moae` for a mixture only)."""
    arch, _ = _lookup(name)
    base = MaskedAutoencoder if arch == "mae" else VisionTransformer
    keys = {p for p in inspect.signature(base.__init__).parameters if p != "self"}
    keys -= {"expert_block"} if arch in EXPERT_BLOCKS else {"expert_block", "moae"}
    return sorted(keys)


def model_arch(name: str) -> str:
    """The family (`catalogue.ARCHS`) of a registered model name."""
    return _lookup(name)[0]


def _lookup(name: str) -> tuple[str, str]:
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _MODELS[name]


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model; `overrides` replace its defaults (`num_frames`, `img_size`,
    `num_classes`, `num_classes_sfer`, `drop_path_rate`, `moae` (a `MoAEConfig`: count, k,
    positions, gate, capacity), `norm_pix_loss`, `mask_ratio_video`, ...; see
    `allowed_overrides(name)`).

    The model remembers `model_name` and `model_kwargs` (the overrides as written down:
    `unilearn.config.plain_kwargs`) for its checkpoint meta, so
    `create_model(model.model_name, **typed_kwargs(model.model_kwargs))` rebuilds it.
    """
    arch, size = _lookup(name)
    allowed = allowed_overrides(name)
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ValueError(f"{name} does not take {unknown}; it takes: {', '.join(allowed)}")
    if not isinstance(overrides.get("moae", MoAEConfig()), MoAEConfig):
        raise TypeError(f"{name}: moae must be a unilearn.config.MoAEConfig")
    kwargs = {**_defaults(arch, size), **overrides}
    model = MaskedAutoencoder(**kwargs) if arch == "mae" else VisionTransformer(**kwargs)
    model.model_name = name
    model.model_kwargs = plain_kwargs(overrides)
    return model
