"""Classification heads (paper Eq. 13): MLP_V for DFER (`head`, VideoMAE's name, so its fine-tuned
heads load) and MLP_I for SFER (`head_sfer`), both on the pooled, fc-normed features.

Each head is one linear layer, as VideoMAE's: the paper calls them MLP heads without giving a
hidden width, and a single layer keeps VideoMAE checkpoints (and its baseline) exact.
"""

from __future__ import annotations

from torch import nn


def build_head(dim: int, num_classes: int) -> nn.Module:
    """A linear classifier `dim -> num_classes`; `nn.Identity` when `num_classes == 0`
    (a feature extractor, as timm and VideoMAE do)."""
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    return nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()
