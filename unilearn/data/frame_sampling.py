"""Which frames of a stored clip a model sees (read from MAE-DFER's `VideoClsDatasetFrame` and
VideoMAE): `finetune_indices` (training, a random window), `pretrain_indices` (MAE pre-training,
a fixed stride from a random start), `eval_indices` (the test clips, uniformly spaced) and
`validation_indices` (the authors' per-epoch validation: one training-style window per video).
Pure functions of the clip length and, where random, the `random.Random` passed in (or the seed,
epoch and video it is made from).
"""

from __future__ import annotations

import random


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
    """Pre-training frames, as the authors' video loader (their `VideoPathDatasetDecode`,
    `_sample_train_indices` + `_video_TSN_decord_batch_loader` with one segment, no jitter):
    `num_frames` at `stride` from a start drawn uniformly from every frame `0 .. n - num_frames *
    stride` (any frame, not only multiples of the stride). A clip shorter than `num_frames *
    stride` starts at 0 and stops advancing at the last on-stride frame <= n - 2 (their loop steps
    on only while `offset + stride < n`, offsets 1-based), which then repeats.

    In stored frames: a store that keeps every k-th frame only (`settings.json` `frame_stride`)
    can start on multiples of k of the source only; a store of every frame starts anywhere."""
    skip = num_frames * stride
    if n >= skip:
        start = rng.randrange(n - skip + 1)
        return [start + i * stride for i in range(num_frames)]
    last = (max(n - 2, 0) // stride) * stride
    return [min(i * stride, last) for i in range(num_frames)]


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


def validation_indices(
    n: int, num_frames: int, stride: int, seed: int, epoch: int, video: str
) -> list[int]:
    """The authors' per-epoch validation clip (their `VideoClsDataset` in `validation` mode
    samples as in training: one window at a random position): `finetune_indices` drawn from a
    generator of (seed, epoch, video) alone, so the clip moves from epoch to epoch, is the same
    in every process and worker, and a resumed run scores the same clips."""
    return finetune_indices(n, num_frames, stride, random.Random(f"{seed}/{epoch}/{video}"))


def _linspace(a: float, b: float, k: int) -> list[float]:
    if k <= 0:
        return []
    if k == 1:
        return [float(a)]
    return [a + (b - a) * i / (k - 1) for i in range(k)]
