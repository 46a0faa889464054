"""Clip transforms: temporal sampling, training augmentation (random resized crop + flip +
RandAugment + random erasing with ONE set of parameters for all frames of a clip), the authors'
SFER image augmentation (resize, random crop, flip, RandAugment, erasing), test-time resize +
centre crop, the two pre-training crops (VideoMAE's multi-scale crop; the authors' random resized
crops), and `normalize` for the engine.

Clips come in as RGB uint8 frames `[T, H, W, 3]` (numpy, as `ClipStore.read_numpy` decodes them; a
torch `[T, C, H, W]` from `ClipStore.read` is accepted too) and leave as torch uint8 `[C, T, S, S]`.
Every random choice is drawn from a `random.Random` passed in, so a clip's augmentation is a pure
function of its sample seed (exact resume; independent of DataLoader workers).

Hand-written on OpenCV rather than torchvision.transforms.v2 for speed, measured on a 16x176^2 clip
on one core: v2's affine ops take 9-14 ms per clip (float grid_sample), its solarize/equalize/
sharpness 6-10 ms, a whole v2 pipeline ~25 ms; here the crop, flip and all geometric RandAugment ops
are composed into ONE affine warp per frame (~3 ms) and point ops are one 256-entry LUT (<1 ms).
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from unilearn.catalogue import IMAGENET_MEAN, IMAGENET_STD, SFER_RANDAUGMENT

# Fill for pixels moved in from outside the frame: the ImageNet mean, as timm/VideoMAE.
_FILL = [round(255 * m) for m in IMAGENET_MEAN]


def normalize(x: torch.Tensor, channel_dim: int | None = None) -> torch.Tensor:
    """uint8 clips -> float, ImageNet mean/std (as VideoMAE). `x` is `[B, C, T, H, W]` (channel
    dim 1) or `[C, T, H, W]` (channel dim 0); runs on whatever device `x` is on."""
    if channel_dim is None:
        channel_dim = 1 if x.ndim == 5 else 0
    shape = [1] * x.ndim
    shape[channel_dim] = 3
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(shape) * 255
    std = torch.tensor(IMAGENET_STD, device=x.device).view(shape) * 255
    return (x.float() - mean) / std


# ---- temporal sampling --------------------------------------------------------------------------


def finetune_indices(n: int, num_frames: int, stride: int, rng: random.Random) -> list[int]:
    """Training frames of a DFER clip, as MAE-DFER samples DFEW/FERV39K/MAFW: `num_frames` frames
    spread evenly over a window of `num_frames * stride` frames at a random position; a clip shorter
    than the window is covered at about `stride` and padded with its last frame."""
    span = num_frames * stride
    if n <= span:
        k = n // stride
        head = [min(int(v), n - 1) for v in _linspace(0, n, k)]
        return head + [n - 1] * (num_frames - k)
    end = rng.randrange(span, n)
    start = end - span
    return [min(int(v), end - 1) for v in _linspace(start, end, num_frames)]


def pretrain_indices(n: int, num_frames: int, stride: int, rng: random.Random) -> list[int]:
    """Pre-training frames: `num_frames` at `stride` from a random start (VideoMAE); frames past the
    end of a short clip repeat its last frame."""
    span = (num_frames - 1) * stride + 1
    start = rng.randrange(max(n - span, 0) + 1)
    return [min(start + i * stride, n - 1) for i in range(num_frames)]


def eval_indices(n: int, num_frames: int, stride: int, n_clips: int) -> list[list[int]]:
    """Test clips as MAE-DFER: every `stride`-th frame (padded with the last to `num_frames`), then
    `n_clips` windows of `num_frames` of those, uniformly spaced from the first to the last."""
    frames = list(range(0, n, stride))
    frames += [frames[-1]] * max(num_frames - len(frames), 0)
    if n_clips == 1:
        starts = [(len(frames) - num_frames) // 2]
    else:
        step = max((len(frames) - num_frames) / (n_clips - 1), 0.0)
        starts = [int(k * step) for k in range(n_clips)]
    return [frames[s : s + num_frames] for s in starts]


def _linspace(a: float, b: float, k: int) -> list[float]:
    if k <= 0:
        return []
    if k == 1:
        return [float(a)]
    return [a + (b - a) * i / (k - 1) for i in range(k)]


# ---- RandAugment on whole clips ------------------------------------------------------------------


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


GEOMETRIC_OPS = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
COLOUR_OPS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Posterize",
    "Solarize",
    "SolarizeAdd",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
)
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


def _geometric_matrix(name: str, level: float, size: int, rng: random.Random) -> np.ndarray:
    """3x3 output->input map of one geometric op on an S x S image (timm's magnitude ranges)."""
    c = (size - 1) / 2
    m = np.eye(3)
    if name == "Rotate":
        a = math.radians(_signed(30.0 * level, rng))
        rot = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
        shift, back = np.eye(3), np.eye(3)
        shift[:2, 2], back[:2, 2] = -c, c
        m = back @ rot @ shift
    elif name == "ShearX":
        m[0, 1] = _signed(0.3 * level, rng)
    elif name == "ShearY":
        m[1, 0] = _signed(0.3 * level, rng)
    elif name == "TranslateXRel":
        m[0, 2] = _signed(0.45 * level, rng) * size
    elif name == "TranslateYRel":
        m[1, 2] = _signed(0.45 * level, rng) * size
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


# ---- spatial transforms -------------------------------------------------------------------------


def random_resized_crop_box(
    h: int, w: int, scale: tuple[float, float], ratio: tuple[float, float], rng: random.Random
) -> tuple[int, int, int, int]:
    """(top, left, height, width) as torchvision's RandomResizedCrop, drawn from `rng`."""
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            return rng.randint(0, h - ch), rng.randint(0, w - cw), ch, cw
    in_ratio = w / h
    if in_ratio < min(ratio):
        cw, ch = w, round(w / min(ratio))
    elif in_ratio > max(ratio):
        ch, cw = h, round(h * max(ratio))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def _crop_matrix(top: float, left: float, ch: float, cw: float, size: int) -> np.ndarray:
    """Output pixel (S x S) -> input pixel of the box, pixel centres aligned."""
    return np.array(
        [
            [cw / size, 0, left - 0.5 + 0.5 * cw / size],
            [0, ch / size, top - 0.5 + 0.5 * ch / size],
            [0, 0, 1],
        ]
    )


def warp_clip(frames: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Warp every frame of `[T, H, W, 3]` with one output->input affine map; returns planar
    `[3, T, S, S]` (each warped frame is split straight into the channel-first output)."""
    t = frames.shape[0]
    out = np.empty((3, t, size, size), np.uint8)
    m = np.ascontiguousarray(matrix[:2], dtype=np.float64)
    identity = np.allclose(m, [[1, 0, 0], [0, 1, 0]]) and frames.shape[1:3] == (size, size)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    for j in range(t):
        w = (
            frames[j]
            if identity
            else cv2.warpAffine(
                frames[j],
                m,
                (size, size),
                flags=flags,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=_FILL,
            )
        )
        cv2.split(w, [out[0, j], out[1, j], out[2, j]])
    return out


def as_frames(clip) -> np.ndarray:
    """A clip as contiguous RGB uint8 frames `[T, H, W, 3]` (a torch `[T, C, H, W]` is accepted)."""
    if isinstance(clip, torch.Tensor):
        clip = clip.permute(0, 2, 3, 1).numpy()
    return np.ascontiguousarray(clip)


class TrainClipTransform:
    """Fine-tuning augmentation `[C, T, H, W]` -> torch uint8 `[C, T, S, S]`: random resized crop
    (scale 0.08-1, ratio 3/4-4/3, as VideoMAE/MAE-DFER), horizontal flip, RandAugment (timm string).

    The crop, the flip and RandAugment's geometric ops are one composed affine warp; RandAugment's
    colour ops follow in the order drawn. Every frame of a clip gets exactly the same parameters.
    """

    erase_fill = "pixel"  # timm's RandomErasing(mode="pixel"), as VideoMAE / MAE-DFER / the authors

    def __init__(
        self,
        input_size: int,
        randaug: str | None = "rand-m7-n4-mstd0.5-inc1",
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: float = 0.5,
        erasing: float = 0.0,
    ) -> None:
        self.input_size = input_size
        self.scale, self.ratio, self.hflip = scale, ratio, hflip
        self.randaug = parse_randaug(randaug)
        self.erasing = erasing

    def _crop(self, h: int, w: int, rng: random.Random) -> np.ndarray:
        top, left, ch, cw = random_resized_crop_box(h, w, self.scale, self.ratio, rng)
        return _crop_matrix(top, left, ch, cw, self.input_size)

    def __call__(self, clip, rng: random.Random) -> torch.Tensor:
        x = as_frames(clip)
        s = self.input_size
        matrix = self._crop(x.shape[1], x.shape[2], rng)
        if rng.random() < self.hflip:
            matrix = matrix @ np.array([[-1, 0, s - 1], [0, 1, 0], [0, 0, 1]])
        ops = draw_randaug(self.randaug, rng) if self.randaug else []
        colour = []
        for name, level in ops:
            if name in GEOMETRIC_OPS:
                matrix = matrix @ _geometric_matrix(name, level, s, rng)
            else:
                colour.append((name, level, random.Random(rng.random())))
        x = warp_clip(x, matrix, s)
        for name, level, op_rng in colour:
            x = colour_op(x, name, level, self.randaug.increasing, op_rng)
        if self.erasing > 0:
            x = random_erase(np.ascontiguousarray(x), self.erasing, rng, self.erase_fill)
        return torch.from_numpy(np.ascontiguousarray(x))


class ResizeCropImageTransform(TrainClipTransform):
    """The authors' SFER image augmentation (their `sfer/__init__.py` `data_augment`): resize the
    image to `resize` x `resize` (aspect not kept), a random `input_size` crop, horizontal flip,
    RandAugment, random erasing with zeros (torchvision's RandomErasing before Normalize). One
    composed warp, as `TrainClipTransform`."""

    erase_fill = "zero"

    def __init__(
        self,
        input_size: int,
        resize: int,
        randaug: str | None = SFER_RANDAUGMENT,
        hflip: float = 0.5,
        erasing: float = 0.0,
    ) -> None:
        if resize < input_size:
            raise ValueError(f"resize={resize} must be >= input_size={input_size}")
        super().__init__(input_size, randaug, hflip=hflip, erasing=erasing)
        self.resize = resize

    def _crop(self, h: int, w: int, rng: random.Random) -> np.ndarray:
        r, s = self.resize, self.input_size
        top, left = rng.randint(0, r - s), rng.randint(0, r - s)
        # output pixel -> pixel of the resized image (a shift) -> pixel of the original
        resize = _crop_matrix(0, 0, h, w, r)
        shift = np.array([[1, 0, left], [0, 1, top], [0, 0, 1]], dtype=np.float64)
        return resize @ shift


# ---- random erasing -----------------------------------------------------------------------------

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


class EvalClipTransform:
    """Test-time: resize the short side to `input_size`, centre crop -> torch uint8 `[C, T, S, S]`."""

    def __init__(self, input_size: int) -> None:
        self.input_size = input_size

    def __call__(self, clip, rng: random.Random | None = None) -> torch.Tensor:
        x = as_frames(clip)
        h, w = x.shape[1:3]
        side = min(h, w)
        matrix = _crop_matrix((h - side) / 2, (w - side) / 2, side, side, self.input_size)
        return torch.from_numpy(warp_clip(x, matrix, self.input_size))


class PretrainClipTransform:
    """MAE pre-training augmentation as VideoMAE's GroupMultiScaleCrop(input_size, [1, .875, .75,
    .66]): crop width and height each a scale of the short side (at most one scale step apart), at
    one of 13 fixed positions, resized to `input_size`; no flip, no RandAugment."""

    scales = (1.0, 0.875, 0.75, 0.66)
    positions = (
        (0, 0),
        (0, 4),
        (4, 0),
        (4, 4),
        (2, 2),
        (2, 0),
        (2, 4),
        (4, 2),
        (0, 2),
        (1, 1),
        (1, 3),
        (3, 1),
        (3, 3),
    )

    def __init__(self, input_size: int) -> None:
        self.input_size = input_size

    def __call__(self, clip, rng: random.Random) -> torch.Tensor:
        x = as_frames(clip)
        h, w = x.shape[1:3]
        sizes = [int(min(h, w) * s) for s in self.scales]
        pairs = [
            (ph, pw) for i, ph in enumerate(sizes) for j, pw in enumerate(sizes) if abs(i - j) <= 1
        ]
        ch, cw = rng.choice(pairs)
        gy, gx = rng.choice(self.positions)
        matrix = _crop_matrix(
            int(gy * (h - ch) / 4), int(gx * (w - cw) / 4), ch, cw, self.input_size
        )
        return torch.from_numpy(warp_clip(x, matrix, self.input_size))


def resize_crop_clip(
    frames: np.ndarray,
    box: tuple[int, int, int, int],
    size: int,
    flip: bool = False,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Crop the integer box (top, left, height, width) of every frame of `[T, H, W, 3]`, resize it
    to `size` x `size` (bilinear, pixel centres aligned), optionally mirror it, into planar
    `[3, T, S, S]` (`out` if given). For axis-aligned crops `cv2.resize` of the box is ~1.5x faster
    than the general `warpAffine` (measured: bench/loader.py)."""
    top, left, h, w = box
    t = frames.shape[0]
    if out is None:
        out = np.empty((3, t, size, size), np.uint8)
    for j in range(t):
        img = cv2.resize(
            frames[j, top : top + h, left : left + w], (size, size), interpolation=cv2.INTER_LINEAR
        )
        if flip:
            img = cv2.flip(img, 1)
        cv2.split(img, [out[0, j], out[1, j], out[2, j]])
    return out


class ResizedCropPretrainTransform:
    """The authors' pre-training crops (their OmniMAE config): short side scaled to
    `short_side` (0 = not scaled), then RandomResizedCrop(`input_size`, `scale`), then a flip with
    probability `hflip` -> torch uint8 `[C, T, S, S]`. Images: scale 0.2-1 and flip 0.5; videos:
    short side 192, scale 0.08-1, no flip. The short-side scaling folds into the crop: the box is
    drawn on the scaled size and mapped back to the nearest whole pixels of the stored frame, then
    resized once. `out` (a `[3, T, S, S]` uint8 array) receives the clip without a copy."""

    def __init__(
        self,
        input_size: int,
        scale: tuple[float, float],
        short_side: int = 0,
        hflip: float = 0.0,
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
    ) -> None:
        self.input_size, self.scale, self.short_side = input_size, tuple(scale), short_side
        self.hflip, self.ratio = hflip, ratio

    def box(self, h: int, w: int, rng: random.Random) -> tuple[tuple[int, int, int, int], bool]:
        """The crop box in stored-frame pixels and whether to mirror, drawn from `rng`."""
        f = self.short_side / min(h, w) if self.short_side else 1.0
        top, left, ch, cw = random_resized_crop_box(
            round(h * f), round(w * f), self.scale, self.ratio, rng
        )
        top, left = min(round(top / f), h - 1), min(round(left / f), w - 1)
        ch, cw = max(1, min(round(ch / f), h - top)), max(1, min(round(cw / f), w - left))
        flip = bool(self.hflip) and rng.random() < self.hflip
        return (top, left, ch, cw), flip

    def __call__(self, clip, rng: random.Random, out: np.ndarray | None = None) -> torch.Tensor:
        x = as_frames(clip)
        box, flip = self.box(x.shape[1], x.shape[2], rng)
        return torch.from_numpy(resize_crop_clip(x, box, self.input_size, flip, out))


def crop_views_on_device(
    frames: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor, views: int, size: int
) -> torch.Tensor:
    """The repeated views of decoded clips, cut on the device: `frames` uint8 `[B, T, H, W, 3]`
    (each clip once), `boxes` `[B * views, 4]` (top, left, height, width in stored-frame pixels,
    as `ResizedCropPretrainTransform.box` draws them), `flip` bool `[B * views]` -> float
    `[B * views, 3, T, S, S]` in 0-255, the bilinear crop-and-resize of `resize_crop_clip`
    without its rounding to uint8 (borders of up-scaled crops may differ by a level). The loader
    then ships each decoded clip once instead of `views` resized copies."""
    from torchvision.ops import roi_align

    b, t = frames.shape[:2]
    planes = frames.permute(0, 1, 4, 2, 3).reshape(b * t, 3, *frames.shape[2:4]).float()
    clip = torch.arange(b * views, device=frames.device) // views
    index = (clip[:, None] * t + torch.arange(t, device=frames.device)).reshape(-1, 1)
    top, left, h, w = boxes.to(planes.dtype).repeat_interleave(t, dim=0).unbind(1)
    rois = torch.stack([index[:, 0].to(planes.dtype), left, top, left + w, top + h], dim=1)
    out = roi_align(planes, rois, (size, size), spatial_scale=1.0, sampling_ratio=1, aligned=True)
    out = out.view(b * views, t, 3, size, size).permute(0, 2, 1, 3, 4)
    return torch.where(flip.view(-1, 1, 1, 1, 1), out.flip(-1), out)
