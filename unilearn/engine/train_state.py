"""Resumable training state: one atomic `last.pt` holding the model, optimiser, grad scaler,
step counter (the resume position: `unilearn.engine.loader`), running metrics and every RNG
(python, numpy, torch, CUDA), so that a run killed at any step and resumed continues bit for
bit; and the run directory's files (`RunFiles`), whose saves first read the NaN/inf loss guard
(`unilearn.engine.step.FiniteWatch`).

Saving does not stall the step loop: the state is copied off the device into reused host
buffers (pinned on CUDA, on a side stream), the parameters and optimiser state while the next
step's forward and backward run (its optimiser step waits for that copy, never for the disk),
and a background thread serialises it and renames it into place, one write at a time
(`CheckpointWriter`). When to save is `unilearn.engine.checkpointing`'s.

Files are loaded with `weights_only=True`, so every state is stored as tensors and plain values.
"""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unilearn.atomic import write_text
from unilearn.engine.checkpoint_writer import CheckpointWriter
from unilearn.engine.step import FiniteWatch, check_finite, unwrap
from unilearn.layout import RUN_FILES
from unilearn.models.checkpoint import (
    CheckpointError,
    check_weights_only_safe,
    default_meta,
    read_checkpoint,
)

FORMAT = "unilearn-train-state/1"


# -- RNG ---------------------------------------------------------------------------------------


def capture_rng() -> dict[str, Any]:
    """Every RNG the training loop draws from, as tensors and plain values."""
    version, py_state, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {
            "version": version,
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss": gauss,
        },
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put every RNG back where `capture_rng` found it."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_training(seed: int, rank: int, state: dict[str, Any] | None) -> None:
    """The training randomness (drop path, gate noise, masks, mixup): its own stream per rank,
    or, resuming, every RNG exactly where `last.pt` caught it. Call it right before the first
    step, after everything that draws random numbers during setup."""
    seed_everything(seed + 1000 * (rank + 1))
    if state:
        restore_rng(state["rng"])


# -- checkpoints -------------------------------------------------------------------------------


def train_state(
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    step: int,
    config_hash: str,
    meta: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The resumable state as one dict, holding the LIVE tensors (`host_copy` it before the
    next step). Call it between steps: `step` is the number of optimiser steps done so far, and
    the RNG states captured now are the ones the next step must start from."""
    model = unwrap(model)
    state = {
        "model": model.state_dict(),
        "meta": {**default_meta(model), **meta},
        "format": FORMAT,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": capture_rng(),
        "step": int(step),
        "config_hash": config_hash,
        "extra": extra or {},
    }
    for key, value in state.items():
        if key != "model":
            check_weights_only_safe(value, key)  # refused now, not at resume time
    return state


def load_train_state(
    path: str | os.PathLike,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    config_hash: str,
    identity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Load a resumable checkpoint into model, optimiser and scaler; return the whole state
    (`step`, `rng`, `extra`; a `sampler` entry of older files is ignored: the step is the
    resume position). RNG states are NOT applied here: the caller calls
    `restore_rng(state["rng"])` right before the next step, after everything that draws random
    numbers during setup."""
    state = read_checkpoint(path)  # names the file when it is missing, truncated or foreign
    if state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a resumable training state (format {state.get('format')!r}, expected {FORMAT!r})"
        )
    if state["config_hash"] != config_hash:
        raise CheckpointError(
            f"{path}: written by a run with config {state['config_hash'][:12]}, this run's config is "
            f"{config_hash[:12]}. Resuming would mix two experiments: use a new --out, or delete "
            f"{path} to restart."
        )
    saved = state["extra"].get("identity")
    if identity is not None and saved != identity:
        raise CheckpointError(
            f"{path}: belongs to run {saved}, not to this one {identity}; use another --out, or "
            f"delete {path} to restart"
        )
    try:
        unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: does not fit this model/optimiser: {e}") from None
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    return state


# -- the run directory -------------------------------------------------------------------------


class RunFiles:
    """A run directory's training files: `last.pt` (resumable), `log.jsonl` (one line per
    epoch, rewritten after each `last.pt` from the history it holds). Every rank reads; only
    rank 0 writes, in the background (`CheckpointWriter`)."""

    def __init__(self, out: str | os.PathLike, dist_info, background: bool = True) -> None:
        self.out = Path(out)
        self.info = dist_info
        self.is_main = dist_info.is_main
        self.last = self.out / RUN_FILES["resume"]
        self._written: str | None = str(self.last) if self.last.is_file() else None
        self.writer = CheckpointWriter(background)
        self.finite = FiniteWatch(self.last_good)
        self._log_lock = threading.Lock()
        self._log_epochs = 0
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            for stale in self.out.glob(f".{RUN_FILES['resume']}.*.tmp"):
                stale.unlink(missing_ok=True)  # a write killed mid-way (kill -9)

    def last_good(self) -> str | None:
        """The resumable checkpoint on disk, if any (for the NaN guard's message)."""
        return self._written

    def resume(
        self, model, optimizer, scaler, config_hash: str, identity: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The saved state if `last.pt` exists (loaded into model/optimiser/scaler), else None.
        `identity` (experiment, dataset, fold, init / mode) must match the saved one."""
        if not self.last.is_file():
            return None
        state = load_train_state(
            self.last, model=model, optimizer=optimizer, scaler=scaler, config_hash=config_hash,
            identity=identity,
        )  # fmt: skip
        if self.is_main:
            print(f"resuming from {self.last} at step {state['step']}", flush=True)
        return state

    def save_last(self, model, optimizer, scaler, step, config_hash, meta, extra,
                  *, collective: bool = True) -> None:  # fmt: skip
        """Check the losses so far (all ranks), then write `last.pt` and `log.jsonl` (rank 0, in
        the background). `collective=False` checks this rank alone (a save on a signal, which
        ranks may see at different steps)."""
        self.finite.check(self.info, collective=collective)
        if not self.is_main:
            return
        if not collective and self.info.distributed:
            _check_parameters_finite(model, step, self.last_good())  # another rank's NaN
        state = train_state(model=model, optimizer=optimizer, scaler=scaler, step=step,
                            config_hash=config_hash, meta=meta, extra=extra)  # fmt: skip
        self.writer.save(self.last, state, then=self._write_log, hold=optimizer)
        self._written = str(self.last)

    def _write_log(self, state: dict[str, Any]) -> None:
        self.write_log(state["extra"].get("history", []))

    def flush(self) -> None:
        """Wait until the write in flight is on disk."""
        self.writer.wait()

    def write_log(self, history: list[dict]) -> None:
        """`log.jsonl` rewritten from the history kept in `last.pt` (or, at an epoch end without
        a save, from the run's: a resumed run recomputes those epochs bit for bit). A history
        shorter than the one on disk (a background write finishing late) is not written."""
        if not self.is_main:
            return
        import json

        with self._log_lock:
            if len(history) < self._log_epochs:
                return
            self._log_epochs = len(history)
            write_text(
                self.out / RUN_FILES["history"], "".join(json.dumps(h) + "\n" for h in history)
            )


def _check_parameters_finite(model: nn.Module, step: int, last_good: str | None) -> None:
    finite = torch.stack([torch.isfinite(p).all() for p in unwrap(model).parameters()]).all()
    if not bool(finite):
        check_finite(float("nan"), step, last_good)
