"""The `model:` section: size, shape, the MoAE / MoE mixture and the MAE decoder.

`MoAEConfig` is the mixture's one value: its defaults are written here once, and the models take
it whole (`create_model(name, moae=...)` -> the ViT -> each expert block -> the gate).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from unilearn.catalogue import MOAE_POSITIONS, MODEL_SIZES, moae_block_indices, model_name
from unilearn.config.base import ConfigError, NonNegFloat, PositiveInt, Strict, validated


class MoAEConfig(Strict):
    """Mixture of Adapter Experts (Eq. 4-12); ViT-MoE uses the same count, k, positions, gate and
    capacity. Defaults follow the authors' code (MSA-LMC/S4D); docs/models.md lists where the
    paper's text differs and the key that selects the text's variant. Frozen: the models keep
    the value they were built with. ViT-MoE's FFN experts have no inner residual (it does not
    read `expert_residual`)."""

    model_config = ConfigDict(frozen=True)

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


class DecoderConfig(Strict):
    """The MAE decoder: the size's (the catalogue's: base = VideoMAE's 4 blocks, width 384, 6
    heads), changed by the keys set here (null = the size's), as the encoder."""

    depth: PositiveInt | None = None
    width: PositiveInt | None = None
    heads: PositiveInt | None = None


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
        return _given(embed_dim=self.width, depth=self.depth, num_heads=self.heads)

    def model_args(
        self, arch: str, labels: Mapping[str, Sequence[str]]
    ) -> tuple[str, dict[str, Any]]:
        """Registered name + `create_model` kwargs of a fine-tune model of `arch` with heads for
        `labels`; a mixture (`unilearn`, `vit_moe`) gets `moae`, this section's one value."""
        # `head` serves DFER and `head_sfer` SFER; a head without classes is absent (an SFER-only
        # model has num_classes=0), so `model(x, task=batch["task"])` always hits the right one.
        kwargs: dict[str, Any] = {
            "num_classes": len(labels.get("dfer", ())),
            "num_classes_sfer": len(labels.get("sfer", ())),
            "img_size": self.input_size,
            "num_frames": self.num_frames,
            "tubelet_size": self.tubelet_size,
            "drop_path_rate": self.drop_path,
            **self.encoder_kwargs(),
        }
        if arch in MIXTURE_ARCHS:
            kwargs["moae"] = self.moae
        return model_name(arch, self.size), kwargs

    def decoder_kwargs(self) -> dict[str, int]:
        """The MAE decoder kwargs that differ from the size's defaults."""
        d = self.decoder
        return _given(decoder_depth=d.depth, decoder_embed_dim=d.width, decoder_num_heads=d.heads)


def _given(**values: int | None) -> dict[str, int]:
    return {key: value for key, value in values.items() if value is not None}


# The classifiers with a mixture of experts in some blocks (UniLearn: MoAE beside the FFN;
# ViT-MoE: FFN experts instead of the FFN); both take `moae`.
MIXTURE_ARCHS = ("unilearn", "vit_moe")


# -- a model's kwargs written down (checkpoint meta, `unilearn config`) and read back ----------
# The mixture's settings as flat model kwargs, as `create_model` took them and checkpoints
# recorded them before `moae` travelled as one value: the same names, `position` prefixed.
_FLAT_NAMES = {"moae_position": "position"}


def plain_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Model kwargs as written down: `moae` as its dict (JSON, and what `torch.load` with
    `weights_only` reads back)."""
    return {k: v.model_dump(mode="json") if k == "moae" else v for k, v in kwargs.items()}


def typed_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Written model kwargs -> `create_model`'s: `moae` as a `MoAEConfig` (validated here), from
    its dict or from the flat names of the checkpoints written before (`n_experts=4,
    moae_position=[0, 2]`; also the `unilearn params` command line)."""
    flat_names = (set(MoAEConfig.model_fields) - set(_FLAT_NAMES.values())) | set(_FLAT_NAMES)
    flat = {_FLAT_NAMES.get(k, k): v for k, v in kwargs.items() if k in flat_names}
    out = {k: v for k, v in kwargs.items() if k not in flat_names}
    given = out.get("moae")
    if flat and given is not None:
        raise ConfigError(f"model kwargs name the mixture twice: moae and {sorted(flat)}")
    if flat or isinstance(given, Mapping):
        out["moae"] = validated(flat or given, MoAEConfig)
    return out
