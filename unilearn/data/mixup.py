"""Mixup and CutMix for video clips `[B, C, T, H, W]` on the device, returning soft targets.

Wraps timm's `Mixup` (batch mode, label smoothing, mixup/cutmix switching) rather than
re-implementing it. timm cuts its CutMix box out of dims 2 and 3, which for a 5-D clip would be T
and H; folding the clip to `[B, C*T, H, W]` (a view) makes timm cut the SAME H x W box across
every frame and channel, which is what CutMix on a clip means.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from timm.data import Mixup


class ClipMixup:
    """`ClipMixup(num_classes, ...)(x [B, C, T, H, W] float, y int64 [B]) -> (x, soft y [B, K])`.

    `seed`, when given to a call, makes that call's draws (lambda, mixup vs cutmix, box) a pure
    function of it (timm draws from numpy's global RNG; the call saves and restores it), so a
    resumed run mixes exactly as the uninterrupted one. The batch size must be even (timm).
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float,
        cutmix_alpha: float,
        prob: float,
        switch_prob: float,
        label_smoothing: float,
    ) -> None:
        self.num_classes = num_classes
        self._mixup = Mixup(
            mixup_alpha=mixup_alpha,
            cutmix_alpha=cutmix_alpha,
            prob=prob,
            switch_prob=switch_prob,
            mode="batch",
            label_smoothing=label_smoothing,
            num_classes=num_classes,
        )

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, seed: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 5:
            raise ValueError(f"ClipMixup expects clips [B, C, T, H, W], got shape {tuple(x.shape)}")
        b, c, t, h, w = x.shape
        flat = x.reshape(b, c * t, h, w)  # a view when x is contiguous: timm mixes it in place
        with _numpy_seed(seed):
            flat, soft = self._mixup(flat, y)
        return flat.reshape(b, c, t, h, w), soft


@contextlib.contextmanager
def _numpy_seed(seed: int | None):
    if seed is None:
        yield
        return
    state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        np.random.set_state(state)
