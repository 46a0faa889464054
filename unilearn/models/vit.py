"""The ViT backbone (the paper's ViT-B/16): VideoMAE's fine-tune ViT, layer for layer and key
for key, so that VideoMAE / MAE-DFER / the UniLearn authors' checkpoints load unchanged. Images
are 1-slice videos (T = tubelet).

State-dict keys: `patch_embed.proj.*`, `blocks.N.{norm1, attn.qkv, attn.q_bias, attn.v_bias,
attn.proj, norm2, mlp.fc1, mlp.fc2}`, `fc_norm.*`, `head.*` (+ `head_sfer.*`, MoAE/MoE keys).

The classification heads (paper Eq. 13): MLP_V for DFER (`head`, VideoMAE's name, so its
fine-tuned heads load) and MLP_I for SFER (`head_sfer`), both on the pooled, fc-normed features.
Each head is one linear layer, as VideoMAE's: the paper calls them MLP heads without giving a
hidden width, and a single layer keeps VideoMAE checkpoints (and its baseline) exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_
from torch import nn

from unilearn.catalogue import PATCH_SIZE, TASKS, moae_block_indices
from unilearn.config import MoAEConfig

LAYER_NORM_EPS = 1e-6  # VideoMAE registers its ViTs with LayerNorm(eps=1e-6)


def sinusoid_position_table(n_position: int, dim: int) -> torch.Tensor:
    """VideoMAE's fixed position table, `[1, n_position, dim]`, over the flat (t, h, w) token index.

    VideoMAE uses a 1-D sinusoid over the flattened token order (not a factorised 3-D one); we
    must do the same for its checkpoints to reproduce its logits. Computed in float64 like its
    numpy original, then cast.
    """
    position = torch.arange(n_position, dtype=torch.float64)[:, None]
    exponent = 2 * torch.div(torch.arange(dim), 2, rounding_mode="floor").to(torch.float64) / dim
    angles = position / torch.pow(torch.tensor(10000.0, dtype=torch.float64), exponent)[None, :]
    table = torch.empty_like(angles)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.to(torch.float32)[None]


def drop_path_rates(drop_path_rate: float, depth: int) -> list[float]:
    """Stochastic-depth rate per block, linear from 0 to `drop_path_rate` (VideoMAE's rule).

    Pure Python so that models can be built on the `meta` device (no `.item()`)."""
    if depth == 1:
        return [0.0]
    return [drop_path_rate * i / (depth - 1) for i in range(depth)]


class PatchEmbed(nn.Module):
    """Tubelet embedding: a Conv3d with kernel = stride = (tubelet, patch, patch)."""

    def __init__(
        self, img_size: int, patch_size: int, tubelet_size: int, in_chans: int, embed_dim: int
    ) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.img_size = img_size
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        self.grid_size = img_size // patch_size
        kernel = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`[B, C, T, H, W]` -> tokens `[B, (T/tubelet) * (H/p) * (W/p), D]` in (t, h, w) order.
        Contiguous: a transposed residual stream would make every layer norm copy its input
        (forward and backward) and every residual add run strided."""
        return self.proj(x).flatten(2).transpose(1, 2).contiguous()


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v over [B, heads, N, d]. SDPA's fused (flash / memory-efficient)
    kernel, except in bf16 on CPU without dropout: there torch's flash kernel is slower than the
    two bf16 matmuls it replaces (forward + backward at ViT-B, 800 tokens, 2 cores: 79 vs 65 ms a
    layer), so the matmuls are written out, as VideoMAE's attention computes them."""
    if q.device.type == "cpu" and q.dtype == torch.bfloat16 and dropout_p == 0.0:
        return ((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)


class Attention(nn.Module):
    """Multi-head self-attention with VideoMAE's bias layout: `qkv` has no bias of its own;
    `q_bias` and `v_bias` are separate parameters and the key bias is fixed at zero."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias)
        q, k, v = qkv.view(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        x = attend(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        x = x.transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


class Block(nn.Module):
    """Pre-norm transformer block: x' = x + MHSA(LN(x)); out = x' + FFN(LN(x'))."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=(0.0, drop))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def build_head(dim: int, num_classes: int) -> nn.Module:
    """A linear classifier `dim -> num_classes`; `nn.Identity` when `num_classes == 0`
    (a feature extractor, as timm and VideoMAE do)."""
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    return nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()


class VisionTransformer(nn.Module):
    """VideoMAE's fine-tune ViT (mean pooling + `fc_norm` + linear `head`) with an optional second
    head for SFER (`head_sfer`) and optional expert blocks (`expert_block`: MoAE or MoE, each
    built with the mixture's settings `moae`) at `moae.position` (a name of
    `catalogue.MOAE_POSITIONS` or block indices).

    Input `[B, C, T, H, W]`, normalised. `T == num_frames` is a video; `T == tubelet_size` is an
    image (a frame repeated `tubelet_size` times), which uses the position table of temporal
    index 0. Any other T is an error. The shape, the heads, the tubelet and the stochastic depth are
    required: the registry gives them (`create_model`: the catalogue's sizes, the config's
    `ModelConfig` defaults); the rest are VideoMAE's constants, which no config key sets.
    """

    def __init__(
        self,
        *,
        img_size: int,
        num_frames: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        num_classes: int,
        tubelet_size: int,
        drop_path_rate: float,
        num_classes_sfer: int = 0,
        patch_size: int = PATCH_SIZE,
        in_chans: int = 3,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        head_drop_rate: float = 0.0,
        init_scale: float = 0.001,
        moae: MoAEConfig | None = None,
        expert_block: type[Block] | None = None,
    ) -> None:
        super().__init__()
        if num_frames % tubelet_size:
            raise ValueError(f"num_frames {num_frames} is not a multiple of tubelet {tubelet_size}")
        if (moae is None) != (expert_block is None):
            raise ValueError("moae and expert_block go together")
        self.num_frames = num_frames
        self.img_size = img_size
        self.tubelet_size = tubelet_size
        self.num_classes = num_classes
        self.num_classes_sfer = num_classes_sfer
        self.embed_dim = embed_dim
        self.patch_embed = PatchEmbed(img_size, patch_size, tubelet_size, in_chans, embed_dim)
        n_tokens = (num_frames // tubelet_size) * self.patch_embed.grid_size**2
        # Fixed, never trained: recomputed from the config, so not part of the state dict.
        self.register_buffer("pos_embed", sinusoid_position_table(n_tokens, embed_dim), False)
        self.pos_drop = nn.Dropout(drop_rate)

        # the blocks built by `expert_block` (MoAE or MoE), by the catalogue's rule
        self.moae_blocks = () if moae is None else moae_block_indices(depth, moae.position)
        dpr = drop_path_rates(drop_path_rate, depth)
        common = dict(
            dim=embed_dim,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop=drop_rate,
            attn_drop=attn_drop_rate,
        )
        self.blocks = nn.ModuleList(
            expert_block(**common, drop_path=dpr[i], moae=moae)
            if i in self.moae_blocks
            else Block(**common, drop_path=dpr[i])
            for i in range(depth)
        )
        self.fc_norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)
        self.head_drop = nn.Dropout(head_drop_rate)
        self.head = build_head(embed_dim, num_classes)
        self.head_sfer = build_head(embed_dim, num_classes_sfer) if num_classes_sfer > 0 else None
        self.apply(_init_vit_weights)
        for module in self.modules():  # experts and gates have their own init (zero gate, ...)
            if hasattr(module, "init_own_weights"):
                module.init_own_weights()
        for head in (self.head, self.head_sfer):
            if isinstance(head, nn.Linear):  # VideoMAE scales the fresh head down (init_scale)
                head.weight.data.mul_(init_scale)
                head.bias.data.mul_(init_scale)

    # -- tokens -------------------------------------------------------------------------------
    def position_embedding(self, t: int) -> torch.Tensor:
        """The position table for an input of T frames: all of it for a video, temporal index 0
        for an image (T == tubelet)."""
        if t == self.num_frames:
            return self.pos_embed
        if t == self.tubelet_size:
            return self.pos_embed[:, : self.patch_embed.grid_size**2]
        raise ValueError(
            f"input has T={t} frames; this model takes T={self.num_frames} (video) or "
            f"T={self.tubelet_size} (image as one tubelet)"
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Tubelet tokens plus position embedding, `[B, N, D]`."""
        check_input_size(x, self.img_size)
        pos = self.position_embedding(x.shape[2])
        return self.patch_embed(x) + pos.to(x.dtype)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder + mean pooling + `fc_norm`: pooled features `[B, D]`."""
        x = self.pos_drop(self.embed(x))
        for block in self.blocks:
            x = block(x)
        return self.fc_norm(x.mean(1))

    def forward_head(self, features: torch.Tensor, task: str = "dfer") -> torch.Tensor:
        """Logits of the head for `task` (`dfer` -> `head`, `sfer` -> `head_sfer`)."""
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
        n_classes = self.num_classes if task == "dfer" else self.num_classes_sfer
        if n_classes == 0:
            key = "num_classes" if task == "dfer" else "num_classes_sfer"
            raise ValueError(f"task {task!r} needs {key} > 0; this model has no {task} head")
        head = self.head if task == "dfer" else self.head_sfer
        return head(self.head_drop(features))

    def forward(self, x: torch.Tensor, task: str = "dfer") -> torch.Tensor:
        return self.forward_head(self.forward_features(x), task)

    # -- extras used by the engine ------------------------------------------------------------
    def aux_loss(self) -> torch.Tensor:
        """Sum of the load-balancing losses of the expert blocks in the last forward (already
        scaled by their coefficient); a zero tensor when there are none."""
        losses = [
            m.last_aux_loss for m in self.modules() if getattr(m, "last_aux_loss", None) is not None
        ]
        if not losses:
            return self.fc_norm.weight.new_zeros(())
        return torch.stack(losses).sum()

    def get_num_layers(self) -> int:
        return len(self.blocks)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed"}


def check_input_size(x: torch.Tensor, img_size: int) -> None:
    if x.ndim != 5:
        raise ValueError(f"expected a [B, C, T, H, W] clip, got shape {tuple(x.shape)}")
    if x.shape[-2:] != (img_size, img_size):
        raise ValueError(
            f"input is {x.shape[-2]}x{x.shape[-1]}; this model takes {img_size}x{img_size}"
        )


def _init_vit_weights(module: nn.Module) -> None:
    """VideoMAE's fine-tune init: truncated normal (std .02) linears, zero biases, unit LayerNorm."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def token_grid(
    num_frames: int, img_size: int, patch_size: int = 16, tubelet_size: int = 2
) -> tuple[int, int]:
    """(temporal slices, tokens per slice) of a clip."""
    return num_frames // tubelet_size, (img_size // patch_size) ** 2


__all__ = [
    "Attention",
    "Block",
    "PatchEmbed",
    "VisionTransformer",
    "drop_path_rates",
    "sinusoid_position_table",
    "token_grid",
]
