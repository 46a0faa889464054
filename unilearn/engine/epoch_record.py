"""The epoch record: what a training run keeps of each epoch (one line of `log.jsonl`, an entry
of `last.pt`'s history, a W&B point): its running loss sums (`EpochSums`), the share of time
spent waiting for data (`StepTimer`) and the record itself (`epoch_record`: losses averaged over
ranks, lr, throughput).

No host-device sync per step: the losses are summed on the device and read every
`runtime.log_every` steps (`unilearn.progress`) and at the epoch end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from unilearn.engine import distributed as D


@dataclass
class EpochSums:
    """Running sums of one epoch (saved in `last.pt`, so a resumed epoch reports the same means).

    `add` takes the step's loss tensors as they are (on the device) and sums them there in
    float64: no host sync per step, and the same numbers as summing their `.item()` values in
    Python floats (float32 -> float64 is exact, and the additions are the same float64 ones).
    `means()` / `state_dict()` read them (one sync)."""

    loss: dict[str, float | torch.Tensor] = field(default_factory=dict)  # per task / modality
    batches: dict[str, int] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=dict)
    aux: float | torch.Tensor = 0.0
    steps: int = 0

    def add(self, task: str, loss, aux, n: int) -> None:
        self.loss[task] = self.loss.get(task, 0.0) + _as_float64(loss)
        self.batches[task] = self.batches.get(task, 0) + 1
        self.samples[task] = self.samples.get(task, 0) + n
        self.aux = self.aux + _as_float64(aux)
        self.steps += 1

    def _read(self) -> tuple[dict[str, float], float]:
        keys = sorted(self.loss)
        values = [self.loss[k] for k in keys] + [self.aux]
        tensors = [v for v in values if isinstance(v, torch.Tensor)]
        if tensors:  # one device-to-host copy for all of them
            host = iter(torch.stack([t.detach().double() for t in tensors]).cpu().tolist())
            values = [next(host) if isinstance(v, torch.Tensor) else float(v) for v in values]
        return dict(zip(keys, values[:-1])), float(values[-1])

    def means(self) -> dict[str, float]:
        loss, aux = self._read()
        out = {f"loss_{t}": loss[t] / self.batches[t] for t in sorted(loss)}
        out["aux_loss"] = aux / max(self.steps, 1)
        for t in sorted(self.samples):
            out[f"samples_{t}"] = float(self.samples[t])
        return out

    def state_dict(self) -> dict:
        loss, aux = self._read()
        return {"loss": loss, "batches": dict(self.batches), "samples": dict(self.samples),
                "aux": aux, "steps": self.steps}  # fmt: skip

    @classmethod
    def from_state(cls, state: dict | None) -> EpochSums:
        return cls(**state) if state else cls()


def _as_float64(value):
    if isinstance(value, torch.Tensor):
        return value.detach().to(torch.float64)
    return float(value)


class StepTimer:
    """Where an epoch's wall time goes: waiting for the next batch (`batch_ready`) or training
    on it (`step_done`, which counts its samples)."""

    def __init__(self) -> None:
        self.data_time = self.compute_time = 0.0
        self.samples = 0
        self._tic = self._got = time.perf_counter()

    def batch_ready(self) -> None:
        self._got = time.perf_counter()
        self.data_time += self._got - self._tic

    def step_done(self, samples: int) -> None:
        self.samples += samples
        self._tic = time.perf_counter()
        self.compute_time += self._tic - self._got

    def timing(self) -> dict[str, float]:
        total = self.data_time + self.compute_time
        return {
            "samples_per_s": self.samples / total if total > 0 else 0.0,
            "data_share": self.data_time / total if total > 0 else 0.0,
        }


def epoch_record(
    epoch: int, step: int, lr: float, sums: EpochSums, timing: dict[str, float], info
) -> dict[str, Any]:
    """The record of the epoch that ended after step `step`: its loss means (over ranks), the lr
    of its last step and this rank's throughput."""
    means = D.reduce_mean(sums.means(), info)
    return {"epoch": epoch, "step": step, "lr": lr, **means, **timing}
