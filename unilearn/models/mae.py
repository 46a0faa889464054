"""Dual-modal masked autoencoder (paper Eq. 1-2): random masking with a ratio per modality
(video 0.95, image 0.90, chosen from the input's T; tube masking as an option), a ViT encoder on
the visible tokens only, a light decoder, and the MSE on masked patches against
per-patch-normalised pixels.

Random masking is the paper's text and the authors' pre-training (omnivision `RandMasking`:
int(ratio x tokens) of a clip's tokens masked anywhere; an image's one slice the same way). Tube
masking (VideoMAE, MAE-DFER) masks the same spatial positions in every temporal slice. Either way
every sample of a modality has the same visible count, so tokens are gathered at fixed shapes
(no boolean indexing, no host sync).

The key layout is VideoMAE's pre-train model (`encoder.*`, `encoder_to_decoder.*`, `mask_token`,
`decoder.*`), also the authors' (their `PretrainVisionTransformer`), so VideoMAE / MAE-DFER /
the authors' pre-train checkpoints load here and ours load into them.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn

from unilearn.catalogue import IMAGENET_MEAN, IMAGENET_STD, PATCH_SIZE
from unilearn.models.vit import (
    LAYER_NORM_EPS,
    Block,
    PatchEmbed,
    check_input_size,
    drop_path_rates,
    sinusoid_position_table,
)

MASKINGS = ("random", "tube")


def _check_ratio(mask_ratio: float, name: str = "mask ratio") -> None:
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {mask_ratio}")


def visible_per_slice(tokens_per_slice: int, mask_ratio: float) -> int:
    """Tube masking: visible tubes per temporal slice, round(P * (1 - ratio)) (half up), at
    least one.

    ViT-B at 160^2 (P = 100): 5 visible at 0.95 (40 of 800 video tokens), 10 at 0.90 (10 of 100
    image tokens), the same as VideoMAE's P - int(ratio * P). Tiny 64^2 (P = 16): 1 at 0.95
    (4 of 32 tokens for 8 frames), 2 at 0.90. Masking is by whole tubes, so the visible count is
    always a multiple of the number of slices.
    """
    _check_ratio(mask_ratio)
    return max(1, int(tokens_per_slice * (1.0 - mask_ratio) + 0.5))


def visible_random(n_slices: int, grid: int, mask_ratio: float) -> int:
    """Random masking: visible tokens of a clip, T*H*W - int(ratio * T * H * W) as the authors'
    `RandMasking` computes it (same float order), at least one.

    ViT-B at 160^2: 40 of 800 video tokens at 0.95, 10 of 100 image tokens at 0.90; tiny 64^2
    with 8 frames: 4 of 64 at 0.95 (int(60.8) masked)."""
    _check_ratio(mask_ratio)
    n = n_slices * grid * grid
    return max(1, n - int(mask_ratio * n_slices * grid * grid))


def random_mask(
    batch: int,
    n_tokens: int,
    n_visible: int,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Random masking: `bool [batch, n_tokens]`, True = masked, exactly `n_visible` False per
    sample at uniformly random positions. Draws from torch's RNG (of `device`), so a
    checkpointed RNG state makes resume exact."""
    noise = torch.rand(batch, n_tokens, device=device)
    visible = noise.argsort(dim=1)[:, :n_visible]
    mask = torch.ones(batch, n_tokens, dtype=torch.bool, device=device)
    return mask.scatter_(1, visible, False)


def tube_mask(
    batch: int,
    n_slices: int,
    tokens_per_slice: int,
    mask_ratio: float,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Random tube masking: `bool [batch, n_slices * tokens_per_slice]`, True = masked, in the
    (t, h, w) token order; the same spatial mask for every temporal slice of a sample.

    Draws from torch's RNG (of `device`), so a checkpointed RNG state makes resume exact.
    """
    n_visible = visible_per_slice(tokens_per_slice, mask_ratio)
    return random_mask(batch, tokens_per_slice, n_visible, device).repeat(1, n_slices)


def split_by_mask(mask: torch.Tensor, n_visible: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(visible token indices `[B, n_visible]`, masked token indices `[B, N - n_visible]`),
    each in token order, for a mask with `n_visible` False per row: fixed shapes, no sync."""
    order = torch.argsort(mask.to(torch.uint8), dim=1, stable=True)  # visible first
    return order[:, :n_visible], order[:, n_visible:]


def gather_tokens(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """`x[b, ids[b, j]]`: `[B, N, D]` -> `[B, len, D]`."""
    return x.gather(1, ids[..., None].expand(-1, -1, x.shape[-1]))


def patchify_target(
    x: torch.Tensor,
    patch_size: int,
    tubelet_size: int,
    mean: torch.Tensor,
    std: torch.Tensor,
    norm_pix_loss: bool = True,
) -> torch.Tensor:
    """VideoMAE's reconstruction target, `[B, N, tubelet * p * p * C]` in (t, h, w) token order.

    De-normalise the input to [0, 1] pixels, cut it into tubelets laid out (p0 p1 p2) x C; with
    `norm_pix_loss` each tubelet is normalised per channel over its pixels (unbiased variance,
    + 1e-6 after the square root), exactly as VideoMAE's pre-training engine.
    """
    b, c, t, h, w = x.shape
    pixels = x.float() * std.view(1, c, 1, 1, 1) + mean.view(1, c, 1, 1, 1)
    pixels = pixels.view(
        b,
        c,
        t // tubelet_size,
        tubelet_size,
        h // patch_size,
        patch_size,
        w // patch_size,
        patch_size,
    )
    # b c t p0 h p1 w p2 -> b (t h w) (p0 p1 p2) c
    patches = pixels.permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(
        b, -1, tubelet_size * patch_size * patch_size, c
    )
    if norm_pix_loss:
        patches = (patches - patches.mean(dim=-2, keepdim=True)) / (
            patches.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6
        )
    return patches.flatten(2)


def masked_reconstruction_loss(
    pred: torch.Tensor, target: torch.Tensor, masked: torch.Tensor
) -> torch.Tensor:
    """Eq. 2: mean squared error over the masked patches only.

    `pred` `[B, N_masked, P]` (the decoder predicts masked tokens only, in token order),
    `target` `[B, N, P]` for all tokens, `masked` `[B, N_masked]` the masked token indices
    (`split_by_mask`): visible patches' targets never enter the loss."""
    return F.mse_loss(pred.float(), gather_tokens(target, masked))


class MAEEncoder(nn.Module):
    """The encoder of VideoMAE's pre-train model: tubelet embedding, fixed position table, ViT
    blocks on the visible tokens only, final LayerNorm (`norm`)."""

    def __init__(
        self,
        img_size: int,
        patch_size: int,
        tubelet_size: int,
        num_frames: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        drop_path_rate: float,
    ) -> None:
        super().__init__()
        self.num_frames = num_frames
        self.img_size = img_size
        self.tubelet_size = tubelet_size
        self.patch_embed = PatchEmbed(img_size, patch_size, tubelet_size, 3, embed_dim)
        n_tokens = (num_frames // tubelet_size) * self.patch_embed.grid_size**2
        self.register_buffer("pos_embed", sinusoid_position_table(n_tokens, embed_dim), False)
        dpr = drop_path_rates(drop_path_rate, depth)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, True, drop_path=dpr[i]) for i in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor, visible: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Encode the visible tokens (indices `visible` `[B, N_visible]`): `[B, N_visible, D]`
        (after `norm`)."""
        tokens = gather_tokens(self.patch_embed(x) + pos.to(x.dtype), visible)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)


class MAEDecoder(nn.Module):
    """VideoMAE's light decoder: ViT blocks, LayerNorm, a linear head to tubelet pixels."""

    def __init__(
        self, embed_dim: int, depth: int, num_heads: int, mlp_ratio: float, out_dim: int
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)
        self.head = nn.Linear(embed_dim, out_dim)

    def forward(self, x: torch.Tensor, n_masked: int) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, -n_masked:]))


class MaskedAutoencoder(nn.Module):
    """Eq. 1-2: one encoder for both modalities. `model(x)` -> `{"loss", "pred", "mask"}`.

    `x` is normalised `[B, C, T, H, W]`: T = num_frames is a video batch (mask_ratio_video),
    T = tubelet_size an image batch (mask_ratio_image; position table of temporal index 0).
    The masking and the loss's settings are required (the registry gives the config's,
    `unilearn.config.PretrainConfig`), and so are the shapes (the catalogue's sizes).
    """

    def __init__(
        self,
        *,
        mask_ratio_video: float,
        mask_ratio_image: float,
        masking: Literal["random", "tube"],
        norm_pix_loss: bool,
        img_size: int,
        num_frames: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        decoder_embed_dim: int,
        decoder_depth: int,
        decoder_num_heads: int,
        tubelet_size: int,
        drop_path_rate: float,
        patch_size: int = PATCH_SIZE,
        mlp_ratio: float = 4.0,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        _check_ratio(mask_ratio_video, "mask_ratio_video")
        _check_ratio(mask_ratio_image, "mask_ratio_image")
        if masking not in MASKINGS:
            raise ValueError(f"masking {masking!r}: expected one of {MASKINGS}")
        self.masking = masking
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        self.num_frames = num_frames
        self.img_size = img_size
        self.mask_ratio_video = mask_ratio_video
        self.mask_ratio_image = mask_ratio_image
        self.norm_pix_loss = norm_pix_loss
        self.encoder = MAEEncoder(
            img_size, patch_size, tubelet_size, num_frames, embed_dim, depth, num_heads,
            mlp_ratio, drop_path_rate,
        )  # fmt: skip
        self.tokens_per_slice = self.encoder.patch_embed.grid_size**2
        n_tokens = (num_frames // tubelet_size) * self.tokens_per_slice
        self.encoder_to_decoder = nn.Linear(embed_dim, decoder_embed_dim, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.register_buffer(
            "pos_embed", sinusoid_position_table(n_tokens, decoder_embed_dim), False
        )
        self.decoder = MAEDecoder(
            decoder_embed_dim, decoder_depth, decoder_num_heads, mlp_ratio,
            3 * tubelet_size * patch_size**2,
        )  # fmt: skip
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32), False)
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32), False)
        self.apply(_init_mae_weights)
        trunc_normal_(self.mask_token, std=0.02, a=-0.02, b=0.02)

    def mask_ratio_for(self, t: int) -> float:
        """The modality's mask ratio, from the input's T."""
        if t == self.num_frames and t != self.tubelet_size:
            return self.mask_ratio_video
        if t == self.tubelet_size:
            return self.mask_ratio_image
        raise ValueError(
            f"input has T={t} frames; this model takes T={self.num_frames} (video) or "
            f"T={self.tubelet_size} (image as one tubelet)"
        )

    def _positions(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = (t // self.tubelet_size) * self.tokens_per_slice  # image: temporal index 0 only
        return self.encoder.pos_embed[:, :n], self.pos_embed[:, :n]

    def n_visible(self, t: int) -> int:
        """Visible tokens per sample for an input of T frames (the modality's ratio, the
        masking)."""
        n_slices, ratio = t // self.tubelet_size, self.mask_ratio_for(t)
        if self.masking == "tube":
            return n_slices * visible_per_slice(self.tokens_per_slice, ratio)
        return visible_random(n_slices, self.encoder.patch_embed.grid_size, ratio)

    def draw_mask(self, b: int, t: int, device: torch.device) -> torch.Tensor:
        """A mask for `b` inputs of T frames (True = masked), by `masking`."""
        n_slices, ratio = t // self.tubelet_size, self.mask_ratio_for(t)
        if self.masking == "tube":
            return tube_mask(b, n_slices, self.tokens_per_slice, ratio, device)
        return random_mask(b, n_slices * self.tokens_per_slice, self.n_visible(t), device)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Mask, encode visible tokens, decode, and score. `mask` (True = masked, the same
        visible count in every row) may be given (tests, visualisation); by default it is drawn
        by `draw_mask`."""
        check_input_size(x, self.img_size)
        b, _, t, _, _ = x.shape
        if mask is None:
            mask, n_visible = self.draw_mask(b, t, x.device), self.n_visible(t)
        else:  # a given mask: reading its visible count waits for the device once
            n_visible = int((~mask[0]).sum())
        visible, masked = split_by_mask(mask, n_visible)
        enc_pos, dec_pos = self._positions(t)
        latent = self.encoder_to_decoder(self.encoder(x, visible, enc_pos))
        dec_pos = dec_pos.expand(b, -1, -1).to(latent.dtype)
        pos_visible = gather_tokens(dec_pos, visible)
        pos_masked = gather_tokens(dec_pos, masked)
        # VideoMAE keeps visible tokens first and masked ones after, with their positions.
        tokens = torch.cat([latent + pos_visible, self.mask_token.to(latent.dtype) + pos_masked], 1)
        pred = self.decoder(tokens, pos_masked.shape[1])
        with torch.no_grad():
            target = patchify_target(
                x, self.patch_size, self.tubelet_size, self.pixel_mean, self.pixel_std,
                self.norm_pix_loss,
            )  # fmt: skip
        loss = masked_reconstruction_loss(pred, target, masked)
        return {"loss": loss, "pred": pred, "mask": mask}

    def aux_loss(self) -> torch.Tensor:
        """No experts in pre-training: always zero (kept so the engine treats models alike)."""
        return self.mask_token.new_zeros(())

    def get_num_layers(self) -> int:
        return len(self.encoder.blocks)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "mask_token"}


def _init_mae_weights(module: nn.Module) -> None:
    """VideoMAE's pre-train init: Xavier-uniform linears, zero biases, unit LayerNorm."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
