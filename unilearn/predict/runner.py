"""Running many inputs: a small thread pool decodes and crops the next inputs while the model
scores the current batch, clips of several inputs share a forward pass, and only a bounded number
of prepared inputs wait at any time (memory stays flat however many inputs there are).

Clips are batched per (head, clip length): images are one-tubelet clips and may use the SFER head.
The forward pass is `unilearn evaluate`'s: normalise on the device, `forward_features` +
`forward_head(task)`, softmax in float32; bf16 autocast on CUDA, fp32 on CPU. An input's score is
the mean of its test clips' softmax scores (as the paper tests); timeline windows are scored one by one.
"""

from __future__ import annotations

import concurrent.futures as cf
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from unilearn.catalogue import IMAGENET_MEAN, IMAGENET_STD
from unilearn.data.transforms import normalize
from unilearn.predict.inputs import InputItem
from unilearn.predict.model import InferenceModel
from unilearn.predict.pipeline import PredictOptions, Prepared, iter_clips, prepare_input


@dataclass
class Scored:
    """A prepared input with its scores: `probs` [K] (mean over test clips) and, for the
    timeline, `window_probs` [n_windows, K]."""

    prepared: Prepared
    probs: np.ndarray | None = None
    window_probs: np.ndarray | None = None
    model_s: float = 0.0
    _clip_probs: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA (as training), none (fp32) on CPU."""
    return torch.bfloat16 if device.type == "cuda" else None


class ClipScorer:
    """Accumulates clips per (head, T) and runs full batches of `batch_size` clips."""

    def __init__(self, spec: InferenceModel, device: torch.device, batch_size: int) -> None:
        self.spec, self.device, self.batch_size = spec, device, max(1, batch_size)
        self.dtype = autocast_dtype(device)
        self.pending: dict[tuple[str, int], list[tuple[Scored, tuple[str, int], torch.Tensor]]] = (
            defaultdict(list)
        )
        self.imagenet = tuple(spec.mean) == tuple(IMAGENET_MEAN) and tuple(spec.std) == tuple(
            IMAGENET_STD
        )

    def add(self, scored: Scored, key: tuple[str, int], clip: torch.Tensor) -> None:
        group = (scored.prepared.head, clip.shape[1])
        self.pending[group].append((scored, key, clip))
        if len(self.pending[group]) >= self.batch_size:
            self._run(group)

    def flush(self) -> None:
        for group in list(self.pending):
            while self.pending[group]:
                self._run(group)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        if self.imagenet:
            return normalize(x)  # the engine's own normalisation, bit for bit
        mean = torch.tensor(self.spec.mean, device=x.device).view(1, 3, 1, 1, 1) * 255
        std = torch.tensor(self.spec.std, device=x.device).view(1, 3, 1, 1, 1) * 255
        return (x.float() - mean) / std

    @torch.no_grad()
    def _run(self, group: tuple[str, int]) -> None:
        items = self.pending[group][: self.batch_size]
        del self.pending[group][: self.batch_size]
        head = group[0]
        start = time.perf_counter()
        x = torch.stack([clip for _, _, clip in items]).to(self.device, non_blocking=True)
        x = self._normalise(x)
        with torch.autocast(
            self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None
        ):
            logits = self.spec.model.forward_head(self.spec.model.forward_features(x), task=head)
        probs = logits.float().softmax(-1).cpu()
        share = (time.perf_counter() - start) / len(items)
        for (scored, key, _), p in zip(items, probs):
            scored._clip_probs[key] = p
            scored.model_s += share


def _finish(scored: Scored) -> None:
    p = scored._clip_probs
    n_clips = len(scored.prepared.clips)
    # as evaluate: softmax of each clip, averaged over the clips (torch mean, float32)
    scored.probs = torch.stack([p[("clip", k)] for k in range(n_clips)]).mean(0).numpy()
    if scored.prepared.windows:
        scored.window_probs = torch.stack(
            [p[("window", w)] for w in range(len(scored.prepared.windows))]
        ).numpy()
    scored._clip_probs = {}


def predict_inputs(
    items: Iterable[InputItem],
    spec: InferenceModel,
    options: PredictOptions,
    *,
    device: torch.device,
    batch_size: int,
    workers: int,
    progress: bool,
) -> list[Scored]:
    """Score every input (in input order); failures come back with their reason."""
    items = list(items)
    scorer = ClipScorer(spec, device, batch_size)
    results: list[Scored] = []
    bar = tqdm(total=len(items), desc="predict", unit="input", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)  # fmt: skip
    failed = 0
    try:
        for prepared in _prepared_stream(items, spec, options, workers):
            scored = Scored(prepared)
            results.append(scored)
            if prepared.ok:
                try:
                    for role, k, clip in iter_clips(prepared, spec.input_size):
                        scorer.add(scored, (role, k), clip)
                    prepared.frames = None  # its clips are built: memory stays bounded
                except Exception as exc:  # noqa: BLE001 - a clip that cannot be built fails its input only
                    prepared.reason = f"{type(exc).__name__}: {prepared.item.path}: {exc}"
                    prepared.reason_code = "error"
                    _drop_pending(scorer, scored)
            failed += not prepared.ok
            bar.update()
            bar.set_postfix(failed=failed, refresh=False)
        scorer.flush()
    finally:
        bar.close()
    for scored in results:
        if scored.prepared.ok:
            _finish(scored)
    return results


def _drop_pending(scorer: ClipScorer, scored: Scored) -> None:
    for group, pending in scorer.pending.items():
        scorer.pending[group] = [entry for entry in pending if entry[0] is not scored]
    scored._clip_probs = {}


def _prepared_stream(
    items: list[InputItem], spec: InferenceModel, options: PredictOptions, workers: int
) -> Iterator[Prepared]:
    """Prepared inputs in input order; with `workers` threads, at most `workers + 1` are
    prepared ahead of the consumer (bounded memory), overlapping with the model."""
    if workers <= 0:
        for i, item in enumerate(items):
            yield prepare_input(i, item, spec, options)
        return
    with cf.ThreadPoolExecutor(workers, thread_name_prefix="predict-prep") as pool:
        ahead: list[cf.Future] = []
        nxt = 0
        while nxt < len(items) or ahead:
            while nxt < len(items) and len(ahead) < workers + 1:
                ahead.append(pool.submit(prepare_input, nxt, items[nxt], spec, options))
                nxt += 1
            yield ahead.pop(0).result()
