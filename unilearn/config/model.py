"""The `model:` section: size, shape, the MoAE / MoE mixture (its defaults are written here once
and `create_model` checks its kwargs with the same rules) and the MAE decoder."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from unilearn.catalogue import (
    MOAE_POSITIONS,
    MODEL_SIZES,
    moae_block_indices,
)
from unilearn.config.errors import validated
from unilearn.config.fields import NonNegFloat, PositiveInt, Strict

# MoAEConfig as flat model kwargs: the same names; `position` is prefixed (a ViT also has position
# tables). The plain-ViT baseline has no experts; ViT-MoE's FFN experts have no inner residual.
_FLAT_NAMES = {"position": "moae_position"}
_GATED = (
    "n_experts",
    "top_k",
    "position",
    "aux_loss_coef",
    "noisy_gating",
    "capacity_factor",
    "capacity_group",
)
_MODEL_KEYS = {"vit": (), "vit_moe": _GATED, "unilearn": (*_GATED, "expert_residual")}


class MoAEConfig(Strict):
    """Mixture of Adapter Experts (Eq. 4-12); ViT-MoE uses the same count, k, positions, gate and
    capacity. Defaults follow the authors' code (MSA-LMC/S4D); docs/models.md lists where the
    paper's text differs and the key that selects the text's variant."""

    n_experts: PositiveInt = 8
    top_k: PositiveInt = 2
    # later (blocks depth/2..depth-1, the paper's default) | early | middle | alternate,
    # or an explicit list of distinct block indices (checked against the depth by the model).
    position: Literal[MOAE_POSITIONS] | list[int] = "later"
    # load-balancing loss weight (Shazeer et al. 2017); 0 = off, as in the authors' runs (their
    # term is never applied)
    aux_loss_coef: NonNegFloat = 0.0
    noisy_gating: bool = True  # gate noise in training (never at test time)
    # tokens an expert keeps per forward: int(tokens * top_k / n_experts * factor), in token
    # order; the rest get nothing from it (authors: 1.0); null = unlimited
    capacity_factor: Annotated[float, Field(gt=0.0)] | None = 1.0
    # at test time (eval mode) the capacity is counted per group of this many consecutive clips
    # of a forward, as the authors' test forward of 16 views (their test batch_size), so that
    # predictions do not depend on evaluate.batch_size; null = per forward. Training always
    # counts per forward, as theirs.
    capacity_group: PositiveInt | None = 16
    # false = experts are plain bottleneck MLPs (authors' code); true = Eq. 7's x + MLP(x)
    expert_residual: bool = False

    @field_validator("top_k")
    @classmethod
    def _top_k_le_n(cls, v: int, info: ValidationInfo) -> int:
        n = info.data.get("n_experts")
        if n is not None and v > n:
            raise ValueError(f"top_k={v} must be <= n_experts={n}")
        return v

    # -- as the models' kwargs (`unilearn.models.create_model`) ----------------------------------

    def model_kwargs(self, arch: str) -> dict[str, Any]:
        """This section as the flat constructor kwargs of a model of `arch`."""
        return {_FLAT_NAMES.get(k, k): getattr(self, k) for k in _MODEL_KEYS[arch]}

    @classmethod
    def from_model_kwargs(cls, kwargs: Mapping[str, Any]) -> MoAEConfig:
        """The section behind flat model kwargs (the others ignored), validated by this schema:
        what `create_model` uses for its defaults and checks, so both are written once."""
        names = {_FLAT_NAMES.get(k, k): k for k in cls.model_fields}
        return validated({k: kwargs[f] for f, k in names.items() if f in kwargs}, cls)


class DecoderConfig(Strict):
    """The MAE decoder (VideoMAE default: 4 blocks, width 384, 6 heads)."""

    depth: PositiveInt = 4
    width: PositiveInt = 384
    heads: PositiveInt = 6


class ModelConfig(Strict):
    size: Literal[tuple(MODEL_SIZES)] = "base"  # base = ViT-B/16; tiny = width 192, depth 4
    # Optional changes to the size's encoder (null = the size's own): e.g. a narrower demo model.
    width: PositiveInt | None = None
    depth: PositiveInt | None = None
    heads: PositiveInt | None = None
    num_frames: PositiveInt = 16
    input_size: PositiveInt = 160
    tubelet_size: PositiveInt = 2
    drop_path: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    moae: MoAEConfig = MoAEConfig()
    decoder: DecoderConfig = DecoderConfig()

    @field_validator("input_size")
    @classmethod
    def _input_multiple_of_patch(cls, v: int) -> int:
        if v % 16:
            raise ValueError(f"input_size={v} must be a multiple of the 16-pixel patch")
        return v

    @model_validator(mode="after")
    def _check_shapes(self) -> ModelConfig:
        if self.num_frames % self.tubelet_size:
            raise ValueError(
                f"num_frames={self.num_frames} must be a multiple of tubelet_size={self.tubelet_size}"
            )
        width, depth, heads = self.encoder_shape
        if width % heads:
            raise ValueError(f"width={width} is not a multiple of heads={heads}")
        try:  # the rule is the catalogue's, shared with `create_model`
            moae_block_indices(depth, self.moae.position)
        except ValueError as e:
            raise ValueError(f"moae.position: {e} (depth {depth} of size {self.size})") from None
        return self

    @property
    def encoder_shape(self) -> tuple[int, int, int]:
        """(width, depth, heads) of the encoder: the size's, changed by width/depth/heads."""
        size = MODEL_SIZES[self.size]
        w, d, h = size.width, size.depth, size.heads
        return self.width or w, self.depth or d, self.heads or h

    def encoder_kwargs(self) -> dict[str, int]:
        """The encoder-shape kwargs that differ from the size's defaults."""
        given = {"embed_dim": self.width, "depth": self.depth, "num_heads": self.heads}
        return {key: value for key, value in given.items() if value is not None}
