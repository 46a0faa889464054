"""What a training run tells the researcher while it works: a line every `runtime.log_every` steps
and at each epoch end on stdout (so in the job's log, Slurm's too), a W&B point (loss, lr,
grad-norm, samples/s, expert usage) at the same steps and the epoch's record at its end (its W&B
run's summary and end when the run ends), `RUN/progress.json`, which `unilearn status` reads,
and, at a terminal, a tqdm bar.

The training step keeps its numbers on the device; they are read here every N steps only (one
host sync per N steps), as windowed means of the epoch's running sums.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from unilearn.atomic import write_text
from unilearn.layout import RUN_FILES

PROGRESS_FILE = RUN_FILES["progress"]


def format_duration(seconds: float | None) -> str:
    """`1:02:03`, `4:05`; `-` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _number(value: Any) -> float:
    """A float from a Python number or a 0-d tensor (the one host sync of a report)."""
    return float(value.item() if hasattr(value, "item") else value)


class Progress:
    """Reports one training run (rank 0 prints and writes; every rank may call)."""

    def __init__(
        self,
        *,
        desc: str,
        stage: str,
        run_dir: str | os.PathLike,
        start_step: int,
        end_step: int,
        steps_per_epoch: int,
        every: int,
        schedule,
        wandb=None,
        model=None,
        is_main: bool = True,
        stream: TextIO | None = None,
        bar: bool = False,
    ) -> None:
        """`bar`: show a tqdm bar too (rank 0 only; the lines are printed either way)."""
        self.desc, self.stage = desc, stage
        self.run_dir = Path(run_dir)
        self.start_step, self.end_step = start_step, end_step
        self.steps_per_epoch = max(steps_per_epoch, 1)
        self.epochs = -(-end_step // self.steps_per_epoch)
        self.every = max(int(every), 1)
        self.schedule, self.wandb, self.model = schedule, wandb, model
        self.is_main = is_main
        self.stream = stream or sys.stdout
        self.started = self.last_time = time.monotonic()
        self.last_step = start_step
        self._seen: dict[str, tuple[float, int, int]] = {}  # task -> (loss sum, batches, samples)
        self._seen_steps = 0
        self.last_loss: dict[str, float] = {}
        self.bar = None
        if bar and is_main:
            from tqdm import tqdm

            self.bar = tqdm(total=end_step, initial=start_step, desc=desc, unit="step",
                            dynamic_ncols=True)  # fmt: skip
        if is_main:  # started: what an earlier attempt left says nothing about this one
            self._write(start_step, None, "running")

    # -- called by the epoch loop ---------------------------------------------------------------

    def step(self, step: int, sums, label: dict[str, str] | None = None) -> None:
        """After optimiser step `step` (1-based count); reports every `every` steps. `label`
        (the batch's task or modality) goes beside the epoch's mean losses on the bar."""
        if self.bar is not None:
            if step % self.every == 0:
                losses = {k.removeprefix("loss_"): f"{v:.3f}"
                          for k, v in sums.means().items() if k.startswith("loss_")}  # fmt: skip
                self.bar.set_postfix(**(label or {}), **losses, refresh=False)
            self.bar.update(1)
        if step % self.every or not self.is_main:
            return
        losses, samples = self._window(sums)
        now = time.monotonic()
        rate = samples / (now - self.last_time) if now > self.last_time else 0.0
        metrics = {f"train/step_{k}": v for k, v in losses.items()}
        metrics["train/lr"] = self.schedule(step - 1)
        metrics["train/samples_per_s"] = rate
        grad_norm = _grad_norm(self.model)
        if grad_norm is not None:
            metrics["train/grad_norm"] = grad_norm
        metrics.update(_expert_shares(self.model))
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)
        self.last_loss = losses or self.last_loss
        parts = [f"{k} {v:.4f}" for k, v in losses.items()]
        if grad_norm is not None:
            parts.append(f"grad-norm {grad_norm:.3g}")
        self._line(step, parts, metrics["train/lr"], rate, now)
        self.last_time, self.last_step = now, step

    def epoch_end(self, record: dict[str, Any]) -> None:
        """After the epoch that `record` (the loop's history entry) summarises."""
        if self.wandb is not None:
            self.wandb.log(wandb_keys(record), step=int(record["step"]))
        if not self.is_main:
            return
        step = int(record["step"])
        losses = {k: float(v) for k, v in record.items() if k.startswith("loss_")}
        self.last_loss = losses or self.last_loss
        parts = [f"{k} {v:.4f}" for k, v in losses.items()]
        epoch = int(record["epoch"]) + 1
        self._line(step, parts, record.get("lr"), record.get("samples_per_s"), time.monotonic(),
                   head=f"epoch {epoch}/{self.epochs} done")  # fmt: skip
        self._seen, self._seen_steps = {}, 0  # the loop starts new sums

    def finished(self, state: str = "done", final: dict[str, Any] | None = None,
                 summary: dict[str, Any] | None = None) -> None:  # fmt: skip
        """The run ended (`done`: W&B keeps the `final` epoch record and `summary` as its run's
        summary) or stopped (`failed`); the bar closes, the W&B run ends, progress.json says so."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.wandb is not None:
            if state == "done":
                self.wandb.summary(wandb_keys(final or {}) | (summary or {}))
                self.wandb.finish()
            else:
                self.wandb.finish(exit_code=1)
        if self.is_main:
            self._write(self.end_step if state == "done" else self.last_step, None, state)

    # -- internals --------------------------------------------------------------------------------

    def _window(self, sums) -> tuple[dict[str, float], float]:
        """Mean loss per task and samples since the last report (the sums restart each epoch)."""
        if sums.steps < self._seen_steps:
            self._seen, self._seen_steps = {}, 0
        losses, samples = {}, 0.0
        for task in sorted(sums.loss):
            loss, batches, n = _number(sums.loss[task]), sums.batches[task], sums.samples[task]
            seen_loss, seen_batches, seen_n = self._seen.get(task, (0.0, 0, 0))
            if batches > seen_batches:
                losses[f"loss_{task}"] = (loss - seen_loss) / (batches - seen_batches)
            samples += n - seen_n
            self._seen[task] = (loss, batches, n)
        self._seen_steps = sums.steps
        return losses, samples

    def eta(self, step: int, now: float) -> float | None:
        done = step - self.start_step
        if done <= 0:
            return None
        return (now - self.started) / done * (self.end_step - step)

    def _line(self, step, parts, lr, rate, now, head: str | None = None) -> None:
        if head is None:  # the epoch the step just done belongs to
            head = f"epoch {(step - 1) // self.steps_per_epoch + 1}/{self.epochs}"
        eta = self.eta(step, now)
        fields = [f"{self.desc}", head, f"step {step}/{self.end_step}", *parts]
        if lr is not None:
            fields.append(f"lr {lr:.3g}")
        if rate:
            fields.append(f"{rate:.1f} samples/s")
        fields.append(f"ETA {format_duration(eta)}")
        print(" | ".join(fields), file=self.stream, flush=True)
        self._write(step, eta, "running")

    def _write(self, step: int, eta: float | None, state: str) -> None:
        record = {
            "stage": self.stage,
            "desc": self.desc,
            "state": state,
            "step": step,
            "end_step": self.end_step,
            "epoch": min(-(-step // self.steps_per_epoch), self.epochs),
            "epochs": self.epochs,
            "eta_s": eta,
            "loss": self.last_loss,
            "updated": time.time(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        try:
            write_text(self.run_dir / PROGRESS_FILE, json.dumps(record) + "\n")
        except OSError as error:  # a full or read-only disk must not stop training
            print(f"progress: cannot write {self.run_dir / PROGRESS_FILE}: {error}",
                  file=sys.stderr, flush=True)  # fmt: skip


def wandb_keys(record: dict[str, Any]) -> dict[str, Any]:
    """An epoch record's W&B keys: training metrics under `train/`, keys with their own section
    (`test/war`, `best/epoch`) as they are."""
    return {(k if "/" in k else f"train/{k}"): v for k, v in record.items()}


def _grad_norm(model) -> float | None:
    """L2 norm of all gradients left by the last step (one host sync), or None without any."""
    if model is None:
        return None
    import torch

    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return None
    return float(torch.nn.utils.get_total_norm(grads).item())


def _expert_shares(model) -> dict[str, float]:
    """Share of routed tokens per expert and MoAE block since the last report (rank 0's counts),
    then the counters restart. Empty for a model without routers."""
    if model is None:
        return {}
    try:
        from unilearn.models import expert_usage, reset_expert_usage

        usage = expert_usage(model)
        reset_expert_usage(model)
    except (ImportError, AttributeError, ValueError):  # a model without the counters
        return {}
    out = {}
    for block, counts in usage.items():
        counts = [float(c) for c in counts.tolist()]
        total = sum(counts) or 1.0
        out.update({f"experts/block{block}/e{i}": c / total for i, c in enumerate(counts)})
    return out
