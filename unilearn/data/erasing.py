"""Random erasing of a clip as timm's RandomErasing (`cube`: the same box in every frame, as
VideoMAE): `erase_box` draws the box, `random_erase` fills it with noise in the normalised space
(timm's mode "pixel") or with zeros (torchvision's default before Normalize).
"""

from __future__ import annotations

import math
import random

import numpy as np

from unilearn.catalogue import IMAGENET_MEAN, IMAGENET_STD

_ERASE_LOG_RATIO = (math.log(0.3), math.log(1 / 0.3))  # timm's aspect range 0.3 - 3.3


def erase_box(
    h: int,
    w: int,
    rng: random.Random,
    scale: tuple[float, float] = (0.02, 1 / 3),
    log_ratio: tuple[float, float] = _ERASE_LOG_RATIO,
) -> tuple[int, int, int, int] | None:
    """(top, left, height, width) of one erasing box as timm's RandomErasing draws it (10 tries;
    None when none fits)."""
    area = h * w
    for _ in range(10):
        target = rng.uniform(*scale) * area
        aspect = math.exp(rng.uniform(*log_ratio))
        eh, ew = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if ew < w and eh < h:
            return rng.randint(0, h - eh), rng.randint(0, w - ew), eh, ew
    return None


def random_erase(x: np.ndarray, prob: float, rng: random.Random, fill: str = "pixel") -> np.ndarray:
    """With probability `prob`, erase one box of a planar uint8 clip `[3, T, S, S]`, the same box in
    every frame (timm's `cube` erasing of VideoMAE). `fill="pixel"`: per-pixel N(0, 1) noise in the
    normalised space (timm's mode "pixel"), written as the uint8 values `normalize` maps to it
    (saturated); `fill="zero"`: black, torchvision's default before Normalize. In place."""
    if rng.random() >= prob:
        return x
    box = erase_box(x.shape[2], x.shape[3], rng)
    if box is None:
        return x
    top, left, eh, ew = box
    region = x[:, :, top : top + eh, left : left + ew]
    if fill == "zero":
        region[...] = 0
        return x
    noise = np.random.default_rng(rng.getrandbits(64)).standard_normal(region.shape, np.float32)
    mean = np.asarray(IMAGENET_MEAN, np.float32).reshape(3, 1, 1, 1) * 255
    std = np.asarray(IMAGENET_STD, np.float32).reshape(3, 1, 1, 1) * 255
    region[...] = np.clip(np.rint(mean + std * noise), 0, 255)
    return x
