"""The DFER video augmentation in the authors' order (their `kinetics.py` `_aug_frame`):
RandAugment on the whole frame, then the random resized crop, then the flip. Checked against
that pipeline re-implemented here step by step (each geometric op a warp of the whole frame in
turn, then the crop resized with torch's bilinear interpolation, then the flip), fed the same
random parameters: 99.9% of the pixels equal to <= 1 grey level, all to <= 1.5, on a smooth frame
(one composed interpolation against several: the 1.5 covers ours rounded once to uint8 (0.5)
against their float pipeline and the blur of chained bilinear resampling, <= 0.1 level a
resampling on this frame, so the few pixels above 1 are rounding), away from two kinds of edge left out of the comparison: 2 pixels of
a fill edge (where the fill blends in), and the outermost 2 output pixels (on an up-scaled crop
torch clamps at the crop box's edge, the one warp reads the frame's next pixel)."""

from __future__ import annotations

import math
import random

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unilearn.config.training import FinetuneConfig
from unilearn.data.randaugment import GEOMETRIC_OPS, draw_randaug, parse_randaug
from unilearn.data.transforms import _FILL, TrainClipTransform, random_resized_crop_box

H, W, S = 176, 176, 160
SPEC = "rand-m9-n3-mstd0.5-inc1"
_FT = FinetuneConfig()  # the config's crop, erasing and RandAugment order
CONFIG_CROP = {
    "scale": _FT.crop_scale,
    "erasing": _FT.random_erasing,
    "randaug_order": _FT.randaug_order,
}


def _smooth_clip(t: int = 2) -> np.ndarray:
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    frames = []
    for k in range(t):
        planes = [
            127
            + 90 * np.sin(2 * np.pi * (xs + 7 * k) / 120 + c) * np.cos(2 * np.pi * ys / 100)
            + 0.1 * (xs - ys)
            for c in range(3)
        ]
        frames.append(np.stack(planes, -1))
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def _op_forward(name: str, level: float, negate: bool) -> np.ndarray:
    """timm's op on the whole frame as an output->input 2x3 map (PIL's convention): rotate
    30*level degrees about the centre, shear 0.3*level about the top-left corner, translate
    0.45*level of the frame's width / height."""
    sign = -1.0 if negate else 1.0
    m = np.eye(3)
    if name == "Rotate":
        # cv2's forward rotation by `deg`, inverted: the output->input map
        fwd = np.vstack(
            [cv2.getRotationMatrix2D(((W - 1) / 2, (H - 1) / 2), sign * 30 * level, 1), [0, 0, 1]]
        )
        m = np.linalg.inv(fwd)
    elif name == "ShearX":
        m[0, 1] = sign * 0.3 * level
    elif name == "ShearY":
        m[1, 0] = sign * 0.3 * level
    elif name == "TranslateXRel":
        m[0, 2] = sign * 0.45 * level * W
    elif name == "TranslateYRel":
        m[1, 2] = sign * 0.45 * level * H
    return m[:2]


def _their_pipeline(frames: np.ndarray, seed: int):
    """Their order on `frames` with the parameters `TrainClipTransform` draws from `seed`
    (drawn here in the same sequence: crop box, flip, the ops, each op's sign)."""
    rng = random.Random(seed)
    top, left, ch, cw = random_resized_crop_box(H, W, (0.08, 1.0), (3 / 4, 4 / 3), rng)
    flip = rng.random() < 0.5
    ops = []
    for name, level in draw_randaug(parse_randaug(SPEC), rng):
        ops.append((name, level, rng.random() < 0.5 if name in GEOMETRIC_OPS else rng.random()))
    if any(name not in GEOMETRIC_OPS for name, _, _ in ops):
        return None  # colour ops: not compared here
    out, valid = [], None
    for frame in frames:
        img = frame.astype(np.float32)
        ok = np.ones((H, W), np.float32)
        for name, level, negate in ops:  # 1. RandAugment on the whole frame, op after op
            m = _op_forward(name, level, negate)
            flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            img = cv2.warpAffine(img, m, (W, H), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                                 borderValue=[float(v) for v in _FILL])  # fmt: skip
            ok = cv2.warpAffine(ok, m, (W, H), flags=flags, borderMode=cv2.BORDER_CONSTANT)
        # 2. the random resized crop (torch bilinear, align_corners False), 3. the flip
        box = torch.from_numpy(img[top : top + ch, left : left + cw]).permute(2, 0, 1)[None]
        crop = F.interpolate(box, size=(S, S), mode="bilinear", align_corners=False)[0]
        okc = F.interpolate(torch.from_numpy(ok[top : top + ch, left : left + cw])[None, None],
                            size=(S, S), mode="bilinear", align_corners=False)[0, 0]  # fmt: skip
        if flip:
            crop, okc = crop.flip(-1), okc.flip(-1)
        out.append(crop.numpy())
        valid = okc.numpy()
    return np.stack(out, 1), valid, ops  # [3, T, S, S]


def test_randaugment_acts_on_the_whole_frame_before_the_crop_as_theirs():
    frames = _smooth_clip()
    ours_t = TrainClipTransform(S, SPEC, **CONFIG_CROP)
    assert ours_t.randaug_order == "before_crop"  # theirs is the config's default
    compared = multi = 0
    for seed in range(400):
        theirs = _their_pipeline(frames, seed)
        if theirs is None:
            continue
        ref, valid, ops = theirs
        ours = ours_t(frames, random.Random(seed)).numpy().astype(np.float64)
        inside = cv2.erode((valid > 0.999).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        inside[:2], inside[-2:], inside[:, :2], inside[:, -2:] = False, False, False, False
        outside = cv2.erode((valid < 1e-3).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        diff = np.abs(ours - ref)
        assert diff[:, :, inside].max(initial=0) <= 1.5, (seed, ops)
        assert (diff[:, :, inside] > 1.0).mean() <= 1e-3, (seed, ops)
        fill = np.array(_FILL, np.float64).reshape(3, 1, 1)
        assert np.abs(ours[:, :, outside] - fill).max(initial=0) <= 1.0, (seed, ops)
        compared += 1
        multi += len(ops) > 1
    assert compared >= 20 and multi >= 3  # enough draws, some with ops one after another


def test_the_order_matters_translation_is_in_frame_units():
    """On a crop of a quarter of the frame's side, their TranslateXRel moves the output by
    0.45 x level x the FRAME's width, i.e. 4x what the same op moves it in crop coordinates."""
    cases = {
        order: TrainClipTransform(
            S,
            "rand-m9-n1-mstd0-p1.0",
            scale=(0.08, 1.0),
            erasing=0.0,
            hflip=0.0,
            randaug_order=order,
        )
        for order in ("before_crop", "after_crop")
    }
    for seed in range(2000):
        rng = random.Random(seed)
        box = random_resized_crop_box(H, W, (0.08, 1.0), (3 / 4, 4 / 3), rng)
        rng.random()  # the flip
        (name, _), = draw_randaug(parse_randaug("rand-m9-n1-mstd0-p1.0"), rng)  # fmt: skip
        if name == "TranslateXRel" and box[3] < W / 3:
            break
    else:
        pytest.fail("no small crop with a translation drawn")
    shift = {}
    for order, t in cases.items():
        matrix, _, _ = t.draw(H, W, random.Random(seed))
        # output pixel -> input pixel: the shift of one output pixel, in output pixels
        shift[order] = abs(
            matrix[0, 2] - cases["before_crop"]._crop(H, W, random.Random(seed))[0, 2]
        )
        shift[order] /= matrix[0, 0]
    assert shift["after_crop"] == pytest.approx(0.45 * 0.9 * S, rel=1e-6)
    assert shift["before_crop"] / shift["after_crop"] == pytest.approx(W / box[3], rel=1e-6)
    assert math.isclose(shift["before_crop"], 0.45 * 0.9 * W * S / box[3], rel_tol=1e-6)
