"""timm's RandAugment on whole clips: the policy string (`parse_randaug`), the ops one clip gets
(`draw_randaug`), the geometric ops as 3x3 affine maps (composed into one warp by the caller,
`unilearn.data.transforms.TrainClipTransform`) and the colour ops as lookup tables / blends applied
to every frame alike (`colour_op`). Magnitude ranges as timm's; every random choice from the
`random.Random` passed in.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class RandAugmentConfig:
    """timm's `rand-m{M}-n{N}-mstd{S}-mmax{X}-inc{0|1}-p{P}` (e.g. `rand-m7-n4-mstd0.5-inc1`)."""

    magnitude: float = 9.0
    num_ops: int = 2
    magnitude_std: float = 0.0
    magnitude_max: float = 10.0
    increasing: bool = False
    prob: float = 0.5


def parse_randaug(spec: str | None) -> RandAugmentConfig | None:
    """Parse a timm RandAugment string; None, "" or "none" mean no RandAugment."""
    if spec is None or spec.strip().lower() in ("", "none", "null"):
        return None
    parts = spec.strip().split("-")
    if parts[0] != "rand":
        raise ValueError(
            f"RandAugment spec {spec!r} must start with 'rand-' (timm syntax, e.g. rand-m7-n4-mstd0.5-inc1)"
        )
    names = {
        "m": "magnitude",
        "n": "num_ops",
        "mstd": "magnitude_std",
        "mmax": "magnitude_max",
        "inc": "increasing",
        "p": "prob",
    }
    kw: dict = {}
    for part in parts[1:]:
        m = re.fullmatch(r"([a-z]+)([0-9.]+|inf)", part)
        if not m or m.group(1) not in names:
            raise ValueError(
                f"RandAugment spec {spec!r}: unknown part {part!r} (known: {', '.join(names)})"
            )
        key, value = names[m.group(1)], float(m.group(2))
        kw[key] = int(value) if key == "num_ops" else bool(value) if key == "increasing" else value
    return RandAugmentConfig(**kw)


# The ops that move pixels (composed into the clip's one warp); the others are colour ops.
GEOMETRIC_OPS = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
# timm's `rand` policy: these 15 ops, each drawn with equal weight
RAND_OPS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "Posterize",
    "Solarize",
    "SolarizeAdd",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)


def _signed(v: float, rng: random.Random) -> float:
    return -v if rng.random() < 0.5 else v


def draw_randaug(config: RandAugmentConfig, rng: random.Random) -> list[tuple[str, float]]:
    """The ops one clip gets and their levels in [0, 1] (timm: each of `num_ops` draws, with
    replacement, is applied with probability `prob`, magnitude ~ N(m, mstd) clipped to [0, mmax])."""
    ops = []
    for name in rng.choices(RAND_OPS, k=config.num_ops):
        if rng.random() > config.prob:
            continue
        m = config.magnitude
        if config.magnitude_std == float("inf"):
            m = rng.uniform(0, m)
        elif config.magnitude_std > 0:
            m = rng.gauss(m, config.magnitude_std)
        ops.append((name, min(max(m, 0.0), config.magnitude_max) / 10.0))
    return ops


def geometric_matrix(
    name: str, level: float, size: int | tuple[int, int], rng: random.Random
) -> np.ndarray:
    """3x3 output->input map of one geometric op on an image of `size` (S, or (H, W)), in pixel
    coordinates (timm's magnitude ranges): rotation about the image centre, shear about the
    top-left corner, translation by a fraction of the image's width / height."""
    h, w = (size, size) if isinstance(size, int) else size
    m = np.eye(3)
    if name == "Rotate":
        a = math.radians(_signed(30.0 * level, rng))
        rot = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
        shift, back = np.eye(3), np.eye(3)
        shift[:2, 2], back[:2, 2] = (-(w - 1) / 2, -(h - 1) / 2), ((w - 1) / 2, (h - 1) / 2)
        m = back @ rot @ shift
    elif name == "ShearX":
        m[0, 1] = _signed(0.3 * level, rng)
    elif name == "ShearY":
        m[1, 0] = _signed(0.3 * level, rng)
    elif name == "TranslateXRel":
        m[0, 2] = _signed(0.45 * level, rng) * w
    elif name == "TranslateYRel":
        m[1, 2] = _signed(0.45 * level, rng) * h
    return m


def _lut(x: np.ndarray, table: np.ndarray) -> np.ndarray:
    return cv2.LUT(x.reshape(-1, x.shape[-1]), table.astype(np.uint8)).reshape(x.shape)


def _enhance_factor(level: float, increasing: bool, rng: random.Random) -> float:
    # timm: the increasing variants move away from 1 with magnitude; the originals span 0.1 .. 1.9
    return 1.0 + _signed(level * 0.9, rng) if increasing else level * 1.8 + 0.1


def _blend(a: np.ndarray, b: np.ndarray, f: float) -> np.ndarray:
    """f * a + (1 - f) * b, saturated to uint8 (PIL's ImageEnhance blend)."""
    shape = a.shape
    return cv2.addWeighted(
        a.reshape(-1, shape[-1]), f, b.reshape(-1, shape[-1]), 1.0 - f, 0.0
    ).reshape(shape)


def _gray(x: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of a planar [3, T, H, W] clip -> [T, H, W] (PIL's convert("L"))."""
    r, g, b = (x[i].reshape(-1, x.shape[-1]) for i in range(3))
    return cv2.addWeighted(cv2.addWeighted(r, 0.299, g, 0.587, 0.0), 1.0, b, 0.114, 0.0).reshape(
        x.shape[1:]
    )


def colour_op(
    x: np.ndarray, name: str, level: float, increasing: bool, rng: random.Random
) -> np.ndarray:
    """One colour op on a planar uint8 clip `[3, T, H, W]`, the same for every frame."""
    i = np.arange(256)
    if name == "Invert":
        return _lut(x, 255 - i)
    if name == "Posterize":
        bits = max(0, 4 - int(level * 4)) if increasing else int(level * 4) + 4
        return x if bits >= 8 else _lut(x, i & (~(2 ** (8 - bits) - 1) & 0xFF))
    if name == "Solarize":
        threshold = 256 - int(level * 256) if increasing else int(level * 256)
        return _lut(x, np.where(i < threshold, i, 255 - i))
    if name == "SolarizeAdd":
        return _lut(x, np.where(i < 128, np.minimum(i + int(level * 110), 255), i))
    if name == "Brightness":
        f = _enhance_factor(level, increasing, rng)
        return _lut(x, np.clip(np.rint(i * f), 0, 255))
    if name == "Contrast":
        # PIL blends with the image's mean grey; one mean for the whole clip keeps frames consistent
        f = _enhance_factor(level, increasing, rng)
        mean = int(_gray(x).mean() + 0.5)
        return _lut(x, np.clip(np.rint(mean + f * (i - mean)), 0, 255))
    if name == "Color":
        f = _enhance_factor(level, increasing, rng)
        gray = _gray(x)
        return np.stack([_blend(x[k], gray, f) for k in range(3)])
    if name == "Sharpness":
        f = _enhance_factor(level, increasing, rng)
        kernel = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13
        flat = x.reshape(-1, x.shape[-1])
        smooth = cv2.filter2D(flat, -1, kernel, borderType=cv2.BORDER_REPLICATE).reshape(x.shape)
        # PIL keeps border pixels; that also undoes the filter's bleed across stacked planes
        smooth[..., 0, :], smooth[..., -1, :] = x[..., 0, :], x[..., -1, :]
        smooth[..., :, 0], smooth[..., :, -1] = x[..., :, 0], x[..., :, -1]
        return _blend(x, smooth, f)
    if name in ("AutoContrast", "Equalize"):
        out = np.empty_like(x)
        for k in range(x.shape[0]):
            for t in range(x.shape[1]):
                if name == "Equalize":
                    cv2.equalizeHist(x[k, t], dst=out[k, t])
                else:
                    cv2.normalize(x[k, t], out[k, t], 0, 255, cv2.NORM_MINMAX)
        return out
    raise ValueError(f"unknown RandAugment op {name!r}")
