"""Clip transforms (spatial): training augmentation (random resized crop + flip + RandAugment +
random erasing with ONE set of parameters for all frames of a clip), the authors' SFER image
augmentation (resize, random crop, flip, RandAugment, erasing), test-time resize + centre crop,
the two pre-training crops (VideoMAE's multi-scale crop; the authors' random resized crops, also
cut on the device), and `normalize` for the engine. Which frames a clip contributes is
`unilearn.data.frame_sampling`; the RandAugment ops are `unilearn.data.randaugment`. Random erasing
is timm's RandomErasing (`cube`: the same box in every frame, as VideoMAE): `erase_box` draws the
box, `random_erase` fills it with noise in the normalised space (timm's mode "pixel") or with zeros
(torchvision's default before Normalize).

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

import functools
import math
import random

import cv2
import numpy as np
import torch

from unilearn.catalogue import IMAGENET_MEAN, IMAGENET_STD
from unilearn.data.randaugment import (
    GEOMETRIC_OPS,
    colour_op,
    draw_randaug,
    geometric_matrix,
    parse_randaug,
)

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


RANDAUG_ORDERS = ("before_crop", "after_crop")


class TrainClipTransform:
    """Fine-tuning augmentation `[C, T, H, W]` -> torch uint8 `[C, T, S, S]`: random resized crop
    (area `scale`, `finetune.crop_scale`; ratio 3/4-4/3, as VideoMAE/MAE-DFER), horizontal flip,
    RandAugment (timm string), random erasing with probability `erasing`.

    `randaug_order`: `before_crop` = the authors' video pipeline (their `kinetics.py`
    `_aug_frame`: RandAugment on the whole frame, then the random resized crop and the flip), so
    rotate / shear / translate act in frame coordinates (a translation is 0.45 x the frame, not
    the crop); `after_crop` = RandAugment on the cropped, flipped clip (crop coordinates; the
    authors' SFER image order). Either way the crop, the flip and the geometric ops are ONE
    composed affine warp per frame; the colour ops follow on the warped clip in the order drawn
    (pointwise ops commute with the warp; Contrast's mean and Equalize/AutoContrast's histograms
    are those of the clip that comes out). Every frame of a clip gets exactly the same parameters.
    """

    erase_fill = "pixel"  # timm's RandomErasing(mode="pixel"), as VideoMAE / MAE-DFER / the authors

    def __init__(
        self,
        input_size: int,
        randaug: str | None,
        *,
        scale: tuple[float, float],
        erasing: float,
        randaug_order: str,
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: float = 0.5,
    ) -> None:
        if randaug_order not in RANDAUG_ORDERS:
            raise ValueError(f"randaug_order {randaug_order!r}: expected one of {RANDAUG_ORDERS}")
        self.input_size = input_size
        self.scale, self.ratio, self.hflip = scale, ratio, hflip
        self.randaug = parse_randaug(randaug)
        self.erasing = erasing
        self.randaug_order = randaug_order

    def _crop(self, h: int, w: int, rng: random.Random) -> np.ndarray:
        top, left, ch, cw = random_resized_crop_box(h, w, self.scale, self.ratio, rng)
        return _crop_matrix(top, left, ch, cw, self.input_size)

    def draw(
        self, h: int, w: int, rng: random.Random
    ) -> tuple[np.ndarray, np.ndarray | None, list]:
        """The clip's random parameters for `h` x `w` frames: the composed output->input warp,
        the output pixels to fill (None = none; see `_clipped`) and the colour ops `(name,
        level, rng)` in the order drawn."""
        s = self.input_size
        matrix = self._crop(h, w, rng)
        if rng.random() < self.hflip:
            matrix = matrix @ np.array([[-1, 0, s - 1], [0, 1, 0], [0, 0, 1]])
        ops = draw_randaug(self.randaug, rng) if self.randaug else []
        frame_ops = []  # before_crop: the geometric ops on the whole frame, in order
        colour = []
        for name, level in ops:
            if name not in GEOMETRIC_OPS:
                colour.append((name, level, random.Random(rng.random())))
            elif self.randaug_order == "before_crop":
                frame_ops.append(geometric_matrix(name, level, (h, w), rng))
            else:
                matrix = matrix @ geometric_matrix(name, level, s, rng)
        if not frame_ops:
            return matrix, None, colour
        fill = _clipped(frame_ops, matrix, h, w, s) if len(frame_ops) > 1 else None
        return np.linalg.multi_dot([*frame_ops, matrix]), fill, colour

    def __call__(self, clip, rng: random.Random) -> torch.Tensor:
        x = as_frames(clip)
        matrix, fill, colour = self.draw(x.shape[1], x.shape[2], rng)
        x = warp_clip(x, matrix, self.input_size)
        if fill is not None:
            for c in range(3):
                x[c][:, fill] = _FILL[c]
        for name, level, op_rng in colour:
            x = colour_op(x, name, level, self.randaug.increasing, op_rng)
        if self.erasing > 0:
            x = random_erase(np.ascontiguousarray(x), self.erasing, rng, self.erase_fill)
        return torch.from_numpy(np.ascontiguousarray(x))


@functools.cache
def _pixel_grid(s: int) -> np.ndarray:
    """`[2, S * S]` (x, y) of every output pixel, row by row."""
    ys, xs = np.mgrid[0:s, 0:s]
    return np.stack([xs.ravel(), ys.ravel()]).astype(np.float64)


def _clipped(frame_ops: list[np.ndarray], matrix: np.ndarray, h: int, w: int, s: int) -> np.ndarray:
    """`[S, S]` bool: the output pixels that some geometric op but the first moved in from outside
    its frame. Applied one after another (as theirs), each op fills what comes from outside the
    frame, and a later op cannot bring back what an earlier one cut off; the one composed warp
    would, so those pixels are set to the fill (the first op's outside is the warp's own border).
    """
    q = matrix[:2, :2] @ _pixel_grid(s) + matrix[:2, 2:]
    out = np.zeros(s * s, bool)
    for m in frame_ops[:0:-1]:  # the last op first: back through every intermediate frame
        q = m[:2, :2] @ q + m[:2, 2:]
        out |= (q[0] < -0.5) | (q[0] > w - 0.5) | (q[1] < -0.5) | (q[1] > h - 0.5)
    return out.reshape(s, s)


class ResizeCropImageTransform(TrainClipTransform):
    """The authors' SFER image augmentation (their `sfer/__init__.py` `data_augment`): resize the
    image to `resize` x `resize` (aspect not kept), a random `input_size` crop, horizontal flip,
    RandAugment (after the crop, in crop coordinates, as theirs), random erasing with zeros
    (torchvision's RandomErasing before Normalize). One composed warp, as `TrainClipTransform`."""

    erase_fill = "zero"

    def __init__(
        self,
        input_size: int,
        resize: int,
        randaug: str | None,
        *,
        erasing: float,
        hflip: float = 0.5,
    ) -> None:
        if resize < input_size:
            raise ValueError(f"resize={resize} must be >= input_size={input_size}")
        # scale: unused, `_crop` below is this transform's own
        super().__init__(input_size, randaug, scale=(1.0, 1.0), erasing=erasing,
                         randaug_order="after_crop", hflip=hflip)  # fmt: skip
        self.resize = resize

    def _crop(self, h: int, w: int, rng: random.Random) -> np.ndarray:
        r, s = self.resize, self.input_size
        top, left = rng.randint(0, r - s), rng.randint(0, r - s)
        # output pixel -> pixel of the resized image (a shift) -> pixel of the original
        resize = _crop_matrix(0, 0, h, w, r)
        shift = np.array([[1, 0, left], [0, 1, top], [0, 0, 1]], dtype=np.float64)
        return resize @ shift


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
    without its rounding to uint8 (< 1 level apart). Only where an up-scaled crop's bilinear sample
    falls outside the box (its outer row or column; two at >3x) do they differ more: the loader
    repeats the box's edge pixel, `roi_align` blends in up to half of the pixel beyond it, so the
    difference is at most half the step across the box edge (tests/test_cuda_paths_on_cpu.py). The loader
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
